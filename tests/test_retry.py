"""The one retry policy: schedules, what is retried, the final error, the log line."""

from __future__ import annotations

import logging

import pytest

from meshinsights.retry import COMMIT, MODEL, SOURCE, Backoff, retrying


def _run(policy: Backoff, outcomes: list[BaseException | str], **kwargs):
    calls, sleeps = [], []
    for attempt in retrying(policy, sleep=sleeps.append, what="probe", **kwargs):
        with attempt:
            calls.append(attempt.retry_state.attempt_number)
            outcome = outcomes[len(calls) - 1]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome, calls, sleeps
    raise AssertionError("unreachable")


def test_schedule_is_exponential_capped_and_jittered_within_bounds():
    policy = Backoff(attempts=10, base=0.5, cap=4.0, jitter=(0.5, 1.0))
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [policy.delay(attempt) for _ in range(200)]
        assert nominal * 0.5 <= min(waits) and max(waits) <= nominal
    # The named policies are the ones the callers had (attempts in all, not retries).
    assert (SOURCE.attempts, COMMIT.attempts, MODEL.attempts) == (4, 12, 4)


def test_retries_the_named_error_then_succeeds_and_logs_each_retry(caplog):
    with caplog.at_level(logging.WARNING, logger="meshinsights.retry"):
        result, calls, sleeps = _run(SOURCE, [TimeoutError("t1"), TimeoutError("t2"), "ok"],
                                     retry_on=TimeoutError)
    assert result == "ok" and calls == [1, 2, 3] and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("probe: retrying in ") and "(attempt 1/4 failed: t1)" in lines[0]


def test_other_errors_propagate_at_once_and_the_last_error_is_reraised():
    with pytest.raises(KeyError):
        _run(SOURCE, [KeyError("k"), "never"], retry_on=TimeoutError)
    policy = SOURCE.with_(attempts=3)
    with pytest.raises(TimeoutError, match="third"):
        _run(policy, [TimeoutError("first"), TimeoutError("second"), TimeoutError("third")],
             retry_on=TimeoutError)


def test_predicate_wait_override_and_redacted_description(caplog):
    seen: list[float] = []
    with caplog.at_level(logging.WARNING, logger="meshinsights.retry"):
        result, _calls, sleeps = _run(
            MODEL,
            [ValueError("retry-after 7 key=sk-secret"), "done"],
            retry_on=lambda exc: "retry-after" in str(exc),
            wait=lambda state: 7.0,
            on_retry=lambda state, delay: seen.append(delay),
            describe=lambda exc: str(exc).replace("sk-secret", "***"),
        )
    assert result == "done" and sleeps == [7.0] and seen == [7.0]
    assert "sk-secret" not in caplog.text and "key=***" in caplog.text
    with pytest.raises(ValueError, match="fatal"):
        _run(MODEL, [ValueError("fatal"), "never"], retry_on=lambda exc: "retry" in str(exc))
