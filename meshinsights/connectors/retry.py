"""Retry transient source faults with exponential backoff; permanent ones fail at once.

The schedule is :data:`meshinsights.retry.SOURCE` (the library's one retry policy); this
module says what is transient for a source and what the final error tells the user.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from meshinsights.errors import ConnectorError, TransientConnectorError
from meshinsights.retry import SOURCE, retrying

__all__ = ["with_retry"]

T = TypeVar("T")


def with_retry(
    fn: Callable[[], T],
    *,
    attempts: int = SOURCE.attempts,
    base_delay: float = SOURCE.base,
    max_delay: float = SOURCE.cap,
    what: str = "source query",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on TransientConnectorError wait base·2^k (jittered) and try again."""
    policy = SOURCE.with_(attempts=attempts, base=base_delay, cap=max_delay)
    try:
        for attempt in retrying(policy, retry_on=TransientConnectorError, what=what, sleep=sleep):
            with attempt:
                return fn()
    except TransientConnectorError as exc:
        raise ConnectorError(
            f"{what} failed after {attempts} attempts: {exc}; check that the source is "
            "up, then rerun (nothing was written, the watermark did not move)"
        ) from exc
    raise AssertionError("unreachable")
