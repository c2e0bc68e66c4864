"""TokenBucket / member_share: the group never exceeds Digital River's rate limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.budget import (
    DRAIN_TARGET_SECONDS,
    FLOOR_FRACTION,
    MIN_RATE,
    TokenBucket,
    fair_shares,
    member_share,
    owned_share,
    partition_demand,
)

EPSILON = 1e-6

steps = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(min_value=0, max_value=5, allow_nan=False)),  # time
        st.sampled_from([0.5, 1.0, 2.0]),  # tokens asked
        st.integers(min_value=1, max_value=6),  # how many asks at that moment
        st.booleans(),  # a 429 pauses the member
    ),
    max_size=60,
)


@given(
    st.floats(min_value=0.5, max_value=50),
    st.sampled_from([2.0, 5.0, 10.0]),
    steps,
)
def test_no_window_is_granted_more_than_rate_times_window_plus_burst(
    rate: float, burst: float, moves: list[tuple[float, float, int, bool]]
) -> None:
    bucket = TokenBucket(rate, burst)
    now = 0.0
    grants: list[tuple[float, float]] = []
    for elapsed, tokens, asks, pause in moves:
        now += elapsed
        if pause:
            bucket.pause_until(now + elapsed)
        for _ in range(asks):
            if bucket.try_take(now, tokens) == 0:
                grants.append((now, tokens))
    for i, (start, _) in enumerate(grants):
        granted = 0.0
        for when, tokens in grants[i:]:
            granted += tokens
            assert granted <= rate * (when - start) + burst + EPSILON


@given(st.floats(min_value=0.5, max_value=50), steps)
def test_waiting_the_answered_time_is_enough(
    rate: float, moves: list[tuple[float, float, int, bool]]
) -> None:
    bucket = TokenBucket(rate, 2.0)
    now = 0.0
    for elapsed, tokens, _, _ in moves:
        now += elapsed
        wait = bucket.try_take(now, tokens)
        if wait:
            assert wait > 0
            now += wait + EPSILON
            assert bucket.try_take(now, tokens) == 0


@given(
    st.floats(min_value=0.5, max_value=50),
    st.floats(min_value=0.5, max_value=50),
    st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.3, 2.0]), max_size=80),
)
def test_a_rate_change_holds_from_the_moment_it_is_made(
    before: float, after: float, gaps: list[float]
) -> None:
    bucket = TokenBucket(before, 3.0)
    bucket.try_take(0.0)
    bucket.set_rate(after, 0.0)
    assert bucket.rate == after
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.try_take(now) == 0
    assert granted <= after * now + 3.0 + EPSILON


def test_a_full_bucket_grants_its_burst_then_asks_to_wait() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.try_take(5.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.try_take(5.0) == pytest.approx(0.1)
    assert bucket.try_take(5.1) == 0


def test_a_429_pauses_the_whole_member_and_restarts_from_empty() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    bucket.try_take(0.0)
    bucket.pause_until(3.0)
    assert bucket.paused_until == 3.0
    assert bucket.try_take(1.0) == pytest.approx(2.0)
    assert bucket.try_take(3.0) == pytest.approx(0.1)
    assert bucket.try_take(3.1) == 0


def test_an_earlier_pause_does_not_shorten_a_later_one() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    bucket.pause_until(8.0)
    bucket.pause_until(4.0)
    assert bucket.try_take(5.0) == pytest.approx(3.0)


def test_a_clock_stepping_back_earns_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.try_take(10.0) == 0
    assert bucket.try_take(5.0) == pytest.approx(1.0)
    assert bucket.try_take(10.5) == pytest.approx(0.5)


def test_shrinking_the_burst_drops_saved_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=10)
    bucket.set_rate(1, 0.0, burst=2)
    assert bucket.burst == 2
    assert [bucket.try_take(0.0) for _ in range(3)] == [0, 0, pytest.approx(1.0)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_impossible_buckets_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst)


def test_asking_more_than_the_burst_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(1, 2).try_take(0.0, 3)


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=10).filter(any),
)
def test_members_owning_partitions_share_at_most_the_group_rate(
    group_rate: float, owned: list[int]
) -> None:
    total = sum(owned)  # every partition is owned by one member
    shares = [member_share(group_rate, n, total) for n in owned if n]
    assert all(share > 0 for share in shares)
    assert sum(shares) <= group_rate * (1 + 1e-9)


def test_a_member_with_no_partitions_keeps_a_small_finite_rate() -> None:
    assert member_share(25, 0, 12) == MIN_RATE
    assert member_share(25, 0, 0) == MIN_RATE
    assert member_share(0.05, 0, 0) == 0.05


def test_a_member_owning_everything_takes_the_whole_rate() -> None:
    assert member_share(250, 12, 12) == 250
    assert member_share(250, 3, 12) == 62.5
    assert member_share(250, 20, 12) == 250


demand_maps = st.dictionaries(
    st.integers(min_value=0, max_value=30),
    st.one_of(st.just(0.0), st.floats(min_value=0, max_value=2000, allow_nan=False)),
    max_size=24,
)
rates = st.floats(min_value=0.5, max_value=1000)


@given(rates, demand_maps)
def test_shares_never_add_up_to_more_than_the_group_limit(
    group_rate: float, demands: dict[int, float]
) -> None:
    shares = fair_shares(group_rate, demands)
    assert set(shares) == set(demands)
    assert sum(shares.values()) <= group_rate * (1 + 1e-9) + EPSILON


@given(rates, demand_maps, st.lists(st.integers(min_value=0, max_value=3), max_size=31))
def test_members_shares_from_one_snapshot_never_add_up_to_more_than_the_limit(
    group_rate: float, demands: dict[int, float], owners: list[int]
) -> None:
    shares = fair_shares(group_rate, demands)
    owner_of = {p: owners[p] if p < len(owners) else 0 for p in demands}
    members = [owned_share(shares, [p for p, o in owner_of.items() if o == m]) for m in range(4)]
    assert sum(members) <= group_rate * (1 + 1e-9) + EPSILON


@given(rates, demand_maps)
def test_every_partition_keeps_the_floor_and_a_demand_that_fits_is_met(
    group_rate: float, demands: dict[int, float]
) -> None:
    shares = fair_shares(group_rate, demands)
    if not demands:
        return
    floor = group_rate * FLOOR_FRACTION / len(demands)
    level = max(shares.values())
    for p, demand in demands.items():
        assert shares[p] >= floor - EPSILON
        if demand <= level:  # under the fair level: what it asks for
            assert shares[p] >= min(demand, level) - 1e-6 * max(1.0, demand)


@given(rates, demand_maps)
def test_a_busier_partition_never_gets_less_than_a_quieter_one(
    group_rate: float, demands: dict[int, float]
) -> None:
    shares = fair_shares(group_rate, demands)
    for a, demand_a in demands.items():
        for b, demand_b in demands.items():
            if demand_a >= demand_b:
                assert shares[a] >= shares[b] - 1e-9 * group_rate


@given(rates, demand_maps.filter(bool))
def test_no_budget_is_left_idle_while_some_partition_wants_it(
    group_rate: float, demands: dict[int, float]
) -> None:
    shares = fair_shares(group_rate, demands)
    assert sum(shares.values()) == pytest.approx(group_rate, rel=1e-9)


def test_a_backlogged_quarter_of_the_partitions_takes_what_the_idle_rest_leaves() -> None:
    demands = {p: (30.0 if p < 3 else 0.0) for p in range(12)}
    shares = fair_shares(30.0, demands)
    busy = owned_share(shares, range(3))
    assert busy == pytest.approx(30.0 * (1 - FLOOR_FRACTION) + 30.0 * FLOOR_FRACTION * 3 / 12)
    assert busy > 0.9 * 30


def test_partitions_that_all_want_more_than_the_limit_split_it_evenly() -> None:
    shares = fair_shares(24.0, dict.fromkeys(range(12), 100.0))
    assert list(shares.values()) == [pytest.approx(2.0)] * 12


def test_a_small_demand_is_met_and_the_rest_goes_to_the_busy_ones() -> None:
    shares = fair_shares(30.0, {"idle": 0.0, "light": 4.0, "busy": 500.0}, floor_fraction=0.0)
    assert shares == {"idle": 0.0, "light": pytest.approx(4.0), "busy": pytest.approx(26.0)}


def test_demand_is_the_backlog_drained_in_the_target_time_capped_at_the_group_rate() -> None:
    assert partition_demand(0, 30) == 0.0
    assert partition_demand(12, 30) == pytest.approx(12 / DRAIN_TARGET_SECONDS)
    assert partition_demand(5000, 30) == 30
