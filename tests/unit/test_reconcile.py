"""split_applied / decide / commit metadata / SuspectRange: deduplication without a key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.decisions import Park, Reconcile
from consumer.core.events import FulfillmentEvent
from consumer.core.fulfillments import build_request
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.reconcile import (
    ReconcileResult,
    SuspectRange,
    decide,
    decode_commit_metadata,
    decode_commit_time,
    encode_commit_metadata,
    listing_not_before,
    split_applied,
)
from tests.event_builders import event_streams, shipment


def pending_of(events: list[FulfillmentEvent]) -> list[PendingEvent]:
    return [PendingEvent(offset, event) for offset, event in enumerate(events)]


@given(event_streams(orders=("ord_a",), max_size=30), st.data())
def test_events_posted_earlier_are_found_and_the_rest_remain_in_order(
    events: list[FulfillmentEvent], data: st.DataObject
) -> None:
    pending = pending_of(events)
    posted = data.draw(st.lists(st.sampled_from(pending), unique=True)) if pending else []
    fulfillments = [
        {"id": f"ful_{n}", **build_request(Batch(0, "ord_a", (entry,)))}
        for n, entry in enumerate(posted)
    ]
    fulfillments.append({"id": "ful_manual", "metadata": {"note": "made in the console"}})
    result = split_applied(pending, fulfillments)
    assert set(result.applied) == set(posted)
    assert sorted(result.applied + result.remaining, key=lambda e: e.offset) == pending
    assert [e.offset for e in result.remaining] == sorted(e.offset for e in result.remaining)


def test_a_coalesced_fulfillment_settles_every_event_it_names() -> None:
    pending = pending_of([shipment("e1"), shipment("e2"), shipment("e3")])
    earlier = build_request(Batch(0, "ord_a", tuple(pending[:2])))
    result = split_applied(pending, [earlier])
    assert result == ReconcileResult(tuple(pending[:2]), (pending[2],))


def test_nothing_at_digital_river_means_everything_remains() -> None:
    pending = pending_of([shipment("e1")])
    assert split_applied(pending, []) == ReconcileResult((), tuple(pending))


CONFLICT = Reconcile("conflict", 409, "item_fulfilled", "Item itm_1 is fulfilled.")


def test_after_an_ambiguous_failure_applied_events_settle_and_the_rest_is_posted() -> None:
    pending = pending_of([shipment("e1"), shipment("e2")])
    result = ReconcileResult((pending[0],), (pending[1],))
    assert decide(result, None) == result


def test_a_conflict_with_nothing_of_ours_applied_is_real_and_parks() -> None:
    pending = tuple(pending_of([shipment("e1"), shipment("e2")]))
    assert decide(ReconcileResult((), pending), CONFLICT) == Park(
        "conflict", 409, "item_fulfilled", "Item itm_1 is fulfilled."
    )


def test_a_conflict_explained_by_our_own_earlier_post_posts_only_the_rest() -> None:
    pending = pending_of([shipment("e1"), shipment("e2")])
    result = ReconcileResult((pending[0],), (pending[1],))
    assert decide(result, CONFLICT) == result


def test_a_conflict_on_a_replay_of_applied_events_settles_them() -> None:
    pending = tuple(pending_of([shipment("e1")]))
    result = ReconcileResult(pending, ())
    assert decide(result, CONFLICT) == result


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_the_horizon_round_trips_through_commit_metadata(horizon: int) -> None:
    assert decode_commit_metadata(encode_commit_metadata(horizon)) == horizon


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "hello",
        "fc1:horizon=",
        "fc1:horizon=-4",
        "fc1:horizon=1x",
        "fc0:horizon=3",
        "fc2:d=1",
    ],
)
def test_foreign_or_garbled_commit_metadata_means_no_horizon(text: str | None) -> None:
    assert decode_commit_metadata(text) is None


@given(st.text(max_size=30))
def test_decoding_any_text_never_raises(text: str) -> None:
    decoded = decode_commit_metadata(text)
    assert decoded is None or decoded >= 0


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**53))
def test_the_horizon_and_the_commit_time_round_trip_through_commit_metadata(
    horizon: int, at_ms: int
) -> None:
    text = encode_commit_metadata(horizon, at_ms)
    assert (decode_commit_metadata(text), decode_commit_time(text)) == (horizon, at_ms)


def test_metadata_written_before_commit_times_still_reads_with_no_time() -> None:
    assert decode_commit_metadata("fc1:horizon=42") == 42
    assert decode_commit_time("fc1:horizon=42") is None


@pytest.mark.parametrize("text", ["fc1:horizon=4;at=", "fc1:horizon=4;at=x", "fc1:horizon=;at=5"])
def test_a_garbled_commit_time_means_no_horizon_either(text: str) -> None:
    assert decode_commit_metadata(text) is None
    assert decode_commit_time(text) is None


@given(
    st.none() | st.floats(0, 1e10),
    st.floats(0, 1e10),
    st.floats(0.001, 300),
)
def test_no_listing_of_a_suspect_order_is_acted_on_while_a_previous_post_can_still_land(
    committed_at: float | None, assigned_at: float, client_timeout: float
) -> None:
    not_before = listing_not_before(committed_at, assigned_at, client_timeout)
    # a POST sent before the previous owner's last commit, or before we were assigned the
    # partition, can land until its client timeout ran out, and not later
    assert not_before >= assigned_at + client_timeout
    if committed_at is not None:
        assert not_before >= committed_at + client_timeout
    latest = assigned_at if committed_at is None else max(committed_at, assigned_at)
    assert not_before == latest + client_timeout


def test_a_negative_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        encode_commit_metadata(-1)


def test_records_between_the_commit_and_the_horizon_are_suspect() -> None:
    suspect = SuspectRange.at_assignment(committed=100, horizon=120, end_offset=500)
    assert 99 in suspect
    assert 100 in suspect
    assert 119 in suspect
    assert 120 not in suspect
    assert "100" not in suspect


def test_without_a_horizon_everything_up_to_the_end_at_assignment_is_suspect() -> None:
    suspect = SuspectRange.at_assignment(committed=100, horizon=None, end_offset=500)
    assert (suspect.start, suspect.stop) == (100, 500)


def test_a_group_that_never_committed_starts_fresh() -> None:
    fresh = SuspectRange.at_assignment(committed=None, horizon=None, end_offset=500)
    assert 0 not in fresh
    assert 499 not in fresh
    assert fresh.carry(None) == 0


def test_a_horizon_below_the_commit_suspects_nothing_new() -> None:
    suspect = SuspectRange.at_assignment(committed=100, horizon=90, end_offset=500)
    assert 100 not in suspect


def test_the_horizon_is_carried_forward_past_our_own_posts() -> None:
    suspect = SuspectRange.at_assignment(committed=100, horizon=120, end_offset=500)
    assert suspect.carry(None) == 120
    assert suspect.carry(110) == 120
    assert suspect.carry(130) == 130
