"""Is Digital River down for everyone, not just for one order? [pure]

Per-order retries handle a failing request; an outage makes every order fail and retry at once.
`CircuitBreaker` watches consecutive systemic failures (no answer, 408, 5xx) across all orders:
past a threshold it opens — the engine stops dispatching and pauses fetching — and lets one
probe through at growing intervals; the first success closes it. Answers that are about one
order (4xx, 409) or about our pace (429) neither open nor close it. Which is which is the
classification's (`RetryLater.systemic`, outcomes.py); `outage_signal` reads it off a trip's
decision and `observe` feeds it in. Time comes in as `now`.

It never sticks in `probing`: a probe that ends without a systemic answer (a 429, a 409 that
persisted, a reconcile read refused, a task cancelled at revoke, a partition lost, a member
fenced) is reported with `probe_ended`, which returns it to `open` with the next probe one
interval later (the interval does not grow: nothing proved Digital River down; nothing proved it
up either, so it does not close). And even if no end is ever reported, a probe older than
`max_probe_interval` counts as ended: from any state, `allows()` is true again at the latest
`max_probe_interval` after the last answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from consumer.core.decisions import Applied, Park, RetryLater, TripDecision

State: TypeAlias = Literal["closed", "open", "probing"]
Signal: TypeAlias = Literal["down", "up"]


def outage_signal(decision: TripDecision) -> Signal | None:
    """What a trip's decision says about Digital River as a whole: "down" for a systemic failure
    (no answer, 408, 5xx), "up" when it applied or refused something (Applied, Park), None when
    it says nothing about that: a 429, a 409 that persisted, a stop, a fenced trip."""
    if isinstance(decision, RetryLater):
        return "down" if decision.systemic else None
    if isinstance(decision, Applied | Park):
        return "up"
    return None


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures_to_open: int = 20
    first_probe_after: float = 2.0
    max_probe_interval: float = 30.0

    def __post_init__(self) -> None:
        ordered = 0 < self.first_probe_after <= self.max_probe_interval
        if not (self.failures_to_open >= 1 and ordered):
            raise ValueError(f"inconsistent breaker policy {self}")


class CircuitBreaker:
    """Contract: `allows(now)` says whether a new request may start; while open it is True once
    per probe interval (that request is the probe, the state becomes `probing` until its answer).
    `success`/`failure` report systemic answers; `probe_ended` reports the end of a probe with any
    other answer (or none); other answers are not reported. A probe unanswered for
    `max_probe_interval` is given up: the next `allows` lets a new probe through."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.state: State = "closed"
        self._consecutive = 0
        self._interval = self.policy.first_probe_after
        self._next_probe = 0.0
        self._probe_started = 0.0

    def allows(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "probing" and now >= self._probe_started + self.policy.max_probe_interval:
            self.state = "open"  # its answer is lost: the probe is over, whatever became of it
        if self.state == "open" and now >= self._next_probe:
            self.state = "probing"
            self._probe_started = now
            return True
        return False

    def success(self) -> None:
        self.state = "closed"
        self._consecutive = 0
        self._interval = self.policy.first_probe_after

    def failure(self, now: float) -> None:
        self._consecutive += 1
        if self.state == "probing":
            self._interval = min(self._interval * 2, self.policy.max_probe_interval)
            self._open(now)
        elif self.state == "closed" and self._consecutive >= self.policy.failures_to_open:
            self._open(now)

    def observe(self, decision: TripDecision, now: float) -> None:
        """Feed a trip's decision: a systemic failure counts, an answer closes, the rest is not
        reported (a probe that ends with it is reported with `probe_ended`)."""
        signal = outage_signal(decision)
        if signal == "down":
            self.failure(now)
        elif signal == "up":
            self.success()

    def probe_ended(self, now: float) -> None:
        """The probe finished without a systemic answer: open again, next probe one interval on.
        A no-op unless a probe is out (its systemic answer, if any, was reported first)."""
        if self.state == "probing":
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self._next_probe = now + self._interval

    @property
    def is_open(self) -> bool:
        return self.state != "closed"
