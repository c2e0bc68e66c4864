"""This member's share of the group's Digital River rate limit. [pure]

Digital River limits requests per KEY (250/s live, 25/s test) and every member of the consumer
group shares the key (`DR-API.md`, "Rate limits"). Each member takes a share proportional to the
partitions it owns (`member_share`) and spends it through a `TokenBucket`. A 429 means the group
went over anyway: its Retry-After pauses the whole member (`pause_until`), not one order.

Time comes in as `now` (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

from typing import Final

_SLACK: Final = 1e-9  # float dust: waiting exactly the time we answered must be enough

MIN_RATE: Final = 0.1
"""Requests/s floor of a member's share: never zero, so waits stay finite."""


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full.

    Over any window of length w, it grants at most `rate` x w + `burst` tokens (for a constant
    rate). A pause empties the bucket: after a 429 the member restarts gently, not in a burst.
    """

    __slots__ = ("_burst", "_last", "_paused_until", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        _check(rate, burst)
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last: float | None = None
        self._paused_until: float | None = None

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
        elif now > self._last:  # a clock that steps back refills nothing
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def try_take(self, now: float, tokens: float = 1) -> float:
        """Take `tokens` and return 0, or take nothing and return the seconds to wait first.

        Raises ValueError for more tokens than `burst` (they could never be granted at once).
        """
        if not 0 < tokens <= self._burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self._burst}")
        if self._paused_until is not None and now < self._paused_until:
            return self._paused_until - now
        self._refill(now)
        if self._tokens + _SLACK >= tokens:
            self._tokens = max(0.0, self._tokens - tokens)
            return 0.0
        return (tokens - self._tokens) / self._rate

    def set_rate(self, rate: float, now: float, burst: float | None = None) -> None:
        """Change the rate (a rebalance changed our share); tokens earned so far are kept."""
        new_burst = self._burst if burst is None else burst
        _check(rate, new_burst)
        self._refill(now)
        self._rate = rate
        self._burst = new_burst
        self._tokens = min(self._tokens, new_burst)

    def pause_until(self, t: float) -> None:
        """Grant nothing before `t` (a 429's Retry-After) and restart from an empty bucket."""
        if self._paused_until is None or t > self._paused_until:
            self._paused_until = t
        self._tokens = 0.0
        if self._last is None or t > self._last:
            self._last = t  # nothing accrues while paused

    @property
    def paused_until(self) -> float | None:
        return self._paused_until


def _check(rate: float, burst: float) -> None:
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if not burst >= 1:
        raise ValueError(f"burst must be >= 1, got {burst}")


def member_share(
    group_rate: float, assigned_partitions: int, total_partitions: int, minimum: float = MIN_RATE
) -> float:
    """This member's requests/s: the group's rate times its fraction of the partitions.

    A member with no partitions (or before the first assignment) gets `minimum` (capped at the
    group rate) so a bucket can still be built and waits stay finite; it posts nothing, so the
    floor never adds to the group's traffic. Members that own partitions split `group_rate`
    exactly.
    """
    if total_partitions <= 0 or assigned_partitions <= 0:
        return min(minimum, group_rate)
    return group_rate * min(assigned_partitions, total_partitions) / total_partitions
