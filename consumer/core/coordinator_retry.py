"""When to call the group coordinator again: one policy for every Kafka client. [pure]

A group's coordinator moves when its broker restarts or leadership of `__consumer_offsets`
changes, and answers "loading" while it reads the group's state back. Reading or committing a
group's offsets, or describing the group, then fails for a moment; calling again a little later
succeeds. The Kafka adapter (`consumer.kafka.coordinator`) classifies each failure as a
`CoordinatorFailure` and asks `CoordinatorRetry.wait_before_retry` what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

CoordinatorFailure: TypeAlias = Literal["moving", "transient", "refused"]
"""moving: no coordinator, another one now, or it is still loading the group; transient: no
answer in time (librdkafka's own wait for a coordinator ends so) or a failure the client calls
retriable; refused: anything else (not authorised, no such group, a member joined, ...)."""

COORDINATOR_ATTEMPTS = 20
RETRIED: frozenset[CoordinatorFailure] = frozenset({"moving", "transient"})


@dataclass(frozen=True, slots=True)
class CoordinatorRetry:
    """Up to `attempts` calls in all, `wait_seconds` apart, while the failure is passing."""

    attempts: int = COORDINATOR_ATTEMPTS
    wait_seconds: float = 0.5

    def wait_before_retry(self, failure: CoordinatorFailure, attempt: int) -> float | None:
        """Seconds to wait before calling again after call number `attempt` (1-based) failed
        with `failure`; None: give up and raise it."""
        if failure not in RETRIED or attempt >= self.attempts:
            return None
        return self.wait_seconds


ONE_TRY = CoordinatorRetry(attempts=1)
