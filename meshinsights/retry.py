"""One retry policy for the library (tenacity), configured per use in one place.

Every place that waits and tries again — a source query, a Delta commit that lost a race, a
compaction batch, a call to the language model — builds its retrier here from a named
:class:`Backoff`, so the schedules are read (and changed) side by side instead of in four
hand-written loops. Each caller still decides *what* is retryable and what the final error
says; this module decides *how often* and *how long*.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

__all__ = ["Backoff", "SOURCE", "COMMIT", "COMPACTION", "MODEL", "retrying"]

logger = logging.getLogger(__name__)

#: What to retry: exception type(s), or a predicate on the exception.
RetryOn: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: try ``attempts`` times in all; before try k+1 wait
    ``min(cap, base·2^(k-1))`` times a random factor in ``jitter``."""

    attempts: int
    base: float
    cap: float
    jitter: tuple[float, float]

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        low, high = self.jitter
        return min(self.cap, self.base * 2 ** (attempt - 1)) * random.uniform(low, high)

    def with_(self, **changes: Any) -> Backoff:
        """This policy with some fields changed (a config's ``max_attempts``, a test's)."""
        return replace(self, **changes)


#: A source query (SQL, ADX, files) that hit a transient fault: the source may be restarting.
SOURCE = Backoff(attempts=4, base=0.5, cap=8.0, jitter=(0.5, 1.0))
#: A Delta commit that lost to a concurrent writer: short waits, many tries (idempotent).
COMMIT = Backoff(attempts=12, base=0.02, cap=2.0, jitter=(0.5, 1.5))
#: A compaction batch that lost to a pipeline's write: reread and merge again.
COMPACTION = Backoff(attempts=9, base=0.05, cap=2.0, jitter=(0.5, 1.5))
#: A model call that got 429/5xx/a timeout (a server's Retry-After wins over the schedule).
MODEL = Backoff(attempts=4, base=0.5, cap=8.0, jitter=(0.75, 1.0))


def retrying(
    policy: Backoff,
    *,
    retry_on: RetryOn,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    wait: Callable[[RetryCallState], float | None] | None = None,
    on_retry: Callable[[RetryCallState, float], None] | None = None,
    describe: Callable[[BaseException], str] = str,
) -> Retrying:
    """A tenacity retrier for ``policy``; iterate it (``for attempt in r: with attempt: ...``).

    ``retry_on`` is the exception type(s) to retry, or a predicate on the exception; anything
    else propagates at once. After the last attempt the last exception is re-raised as it
    was, so the caller can wrap it in an error that says what to do. Every retry is logged
    (``what``, the attempt, the wait, and the error as ``describe`` renders it — pass one that
    redacts when the error may hold a secret); ``on_retry`` also sees it (e.g. to record the
    waits). ``wait`` may override the schedule for one retry (e.g. a server's Retry-After)
    by returning a number instead of None.
    """
    predicate = (
        retry_on
        if callable(retry_on) and not isinstance(retry_on, type)
        else (lambda exc: isinstance(exc, retry_on))  # type: ignore[arg-type]
    )

    def _wait(state: RetryCallState) -> float:
        chosen = wait(state) if wait is not None else None
        return policy.delay(state.attempt_number) if chosen is None else chosen

    def _before_sleep(state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action else 0.0
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s: retrying in %.2fs (attempt %d/%d failed: %s)",
            what,
            delay,
            state.attempt_number,
            policy.attempts,
            describe(exc) if exc is not None else "",
        )
        if on_retry is not None:
            on_retry(state, delay)

    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_wait,
        retry=retry_if_exception(predicate),
        sleep=sleep,
        before_sleep=_before_sleep,
        reraise=True,
    )
