"""This member's share of the group's Digital River rate limit. [pure]

Digital River limits requests per KEY (250/s live, 25/s test) and every member of the consumer
group shares the key (`DR-API.md`, "Rate limits"). The budget follows the work (docs/budget.md):
each partition's owner publishes the partition's *demand* (`partition_demand`, requests/s it could
use now) in its commit metadata; every member reads the group's commits and splits the limit over
the partitions by max-min fairness (`fair_shares`): a partition gets what it asks for when the
limit allows, the rest is shared equally among those that want more, and no partition drops below
a small floor (so work arriving at an idle one starts at once). A member's share is the sum over
the partitions it owns. Before any demand is known, `member_share` (proportional to partitions)
is the fallback. Spent through a `TokenBucket`; a 429 means the group went over anyway: its
Retry-After pauses the whole member (`pause_until`), not one order.

Time comes in as `now` (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Final, TypeVar

K = TypeVar("K", bound=Hashable)

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


DRAIN_TARGET_SECONDS: Final = 1.0
"""A partition's backlog is asked for at a rate that would drain it in this time."""

FLOOR_FRACTION: Final = 0.02
"""Share of the group limit spread evenly over all partitions whatever their demand."""


def partition_demand(backlog: int, group_rate: float) -> float:
    """Requests/s a partition could use now: its unsettled records over DRAIN_TARGET_SECONDS,
    never more than the whole group's rate (an over-estimate only costs others nothing: the
    water-filling caps it at the fair level)."""
    if backlog <= 0 or group_rate <= 0:
        return 0.0
    return min(group_rate, backlog / DRAIN_TARGET_SECONDS)


def fair_shares(
    group_rate: float, demands: Mapping[K, float], floor_fraction: float = FLOOR_FRACTION
) -> dict[K, float]:
    """Max-min fair split of `group_rate` over the keys of `demands` (requests/s each).

    Contract: the shares add up to at most `group_rate`; each is at least the floor
    (`group_rate x floor_fraction / len(demands)`); a key whose demand fits under the fair level
    gets at least its demand; keys wanting more share the rest equally; when the demands add up to
    less than the limit the spare is spread evenly (work conserving). Negative or NaN demands
    count as 0.
    """
    n = len(demands)
    if n == 0 or group_rate <= 0:
        return {k: 0.0 for k in demands}
    floor = group_rate * min(max(floor_fraction, 0.0), 1.0) / n
    wants = {k: _clean(d) - floor for k, d in demands.items()}
    wants = {k: max(0.0, w) for k, w in wants.items()}
    rest = group_rate - floor * n
    total = sum(wants.values())
    if total <= rest:
        spare = (rest - total) / n
        return {k: floor + w + spare for k, w in wants.items()}
    level = _water_level(sorted(wants.values()), rest)
    return {k: floor + min(w, level) for k, w in wants.items()}


def _clean(demand: float) -> float:
    return demand if not math.isnan(demand) and demand > 0 else 0.0


def _water_level(ascending: list[float], budget: float) -> float:
    """The level L with sum(min(w, L)) == budget, for wants that add up to more than budget."""
    remaining = budget
    for i, want in enumerate(ascending):
        others = len(ascending) - i
        if want * others >= remaining:
            return remaining / others
        remaining -= want
    return ascending[-1] if ascending else 0.0  # unreachable when the wants exceed the budget


def owned_share(shares: Mapping[K, float], owned: Iterable[K]) -> float:
    """A member's requests/s: the sum of the shares of the partitions it owns."""
    return sum(shares.get(k, 0.0) for k in owned)


LOOKAHEAD_SECONDS: Final = 2.0
MIN_IN_FLIGHT: Final = 8


def in_flight_cap(rate: float, ceiling: int) -> int:
    """Batches worth having out at `rate` requests/s: what the budget lets go within
    LOOKAHEAD_SECONDS (at least MIN_IN_FLIGHT, at most `ceiling`). More would only wait for
    tokens, and every batch out is one a successor must reconcile after a crash."""
    wanted = math.ceil(rate * LOOKAHEAD_SECONDS) if rate > 0 else MIN_IN_FLIGHT
    return max(1, min(ceiling, max(MIN_IN_FLIGHT, wanted)))
