"""The membership lease: a member that may have lost its partitions posts nothing more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.lease import MembershipLease, derived_lease_seconds

LENGTH = 4.0


def test_no_lease_before_the_first_confirmation() -> None:
    lease = MembershipLease(LENGTH)
    assert not lease.valid(0.0)
    assert not lease.lapsed(0.0)


def test_a_consume_grants_the_lease_for_its_length_from_when_it_started() -> None:
    lease = MembershipLease(LENGTH)
    lease.heard(10.0)
    assert lease.valid(13.99)
    assert not lease.valid(14.0)
    assert lease.lapsed(14.0)


def test_a_consume_that_spanned_a_freeze_renews_nothing_past_the_freeze() -> None:
    lease = MembershipLease(LENGTH)
    lease.heard(0.0)
    lease.heard(1.0)  # this consume started at 1 and returned at 60: the process was frozen
    assert not lease.valid(60.0)


def test_once_lapsed_a_consume_does_not_renew_only_an_accepted_commit_does() -> None:
    lease = MembershipLease(LENGTH)
    lease.heard(0.0)
    lease.heard(60.0)  # librdkafka may not know yet that the session expired
    assert not lease.valid(60.1)
    lease.proven(60.2)  # the coordinator accepted a commit: still a member
    assert lease.valid(60.3)
    lease.heard(61.0)
    assert lease.valid(64.9)


@pytest.mark.parametrize("length", [0.0, -1.0, float("nan"), float("inf")])
def test_a_lease_needs_a_positive_finite_length(length: float) -> None:
    with pytest.raises(ValueError, match="lease length"):
        MembershipLease(length)


def test_the_default_lease_is_well_inside_the_session_timeout() -> None:
    assert derived_lease_seconds(None) == pytest.approx(30.0)
    assert derived_lease_seconds(6000) == pytest.approx(4.0)


_EVENTS = st.lists(
    st.tuples(st.sampled_from(["heard", "proven", "check"]), st.floats(0, 10)), max_size=100
)


@given(_EVENTS)
def test_the_lease_is_never_valid_longer_than_its_length_after_the_last_confirmation_counted(
    events: list[tuple[str, float]],
) -> None:
    lease = MembershipLease(LENGTH)
    now = 0.0
    last_counted: float | None = None
    for kind, dt in events:
        now += dt
        if kind == "heard":
            if last_counted is None or now < last_counted + LENGTH:
                last_counted = now
            lease.heard(now)
        elif kind == "proven":
            last_counted = now
            lease.proven(now)
        else:
            expected = last_counted is not None and now < last_counted + LENGTH
            assert lease.valid(now) == expected


@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_confirmations_never_move_the_lease_backwards(
    first: float, second: float, t: float
) -> None:
    lease = MembershipLease(LENGTH)
    lease.proven(first)
    before = lease.remaining(t)
    lease.proven(min(first, second))  # a late report of an older confirmation
    lease.heard(min(first, second))
    assert lease.remaining(t) == before


@given(st.floats(0.001, 10), st.floats(0, 1000), st.floats(0, 1000))
def test_after_a_freeze_longer_than_the_lease_nothing_is_valid_until_proven(
    length: float, start: float, freeze: float
) -> None:
    lease = MembershipLease(length)
    lease.heard(start)
    wake = start + length + freeze
    lease.heard(wake)  # consumes after waking prove nothing
    lease.heard(wake + length / 2)
    assert not lease.valid(wake + length / 2)
    lease.proven(wake + length / 2)
    assert lease.valid(wake + length / 2)
