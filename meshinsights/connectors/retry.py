"""Retry transient source faults with exponential backoff; permanent ones fail at once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from meshinsights.errors import ConnectorError, TransientConnectorError

__all__ = ["with_retry"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def with_retry(
    fn: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    what: str = "source query",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on TransientConnectorError wait base·2^k (jittered) and try again."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TransientConnectorError as exc:
            if attempt == attempts:
                raise ConnectorError(
                    f"{what} failed after {attempts} attempts: {exc}; check that the source is "
                    "up, then rerun (nothing was written, the watermark did not move)"
                ) from exc
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            logger.warning(
                "%s: transient error (attempt %d/%d), retrying in %.2fs: %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            sleep(delay)
    raise AssertionError("unreachable")
