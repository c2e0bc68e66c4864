"""A replayed record is settled from the changelog only when the changelog names it exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.applied_facts import (
    AppliedFacts,
    listing_needed,
    replay_verdict,
)
from consumer.core.bulk_reconcile import BULK_MIN_RECORDS
from consumer.core.dedupe import decode_offsets, encode_offsets
from consumer.core.dispatch_log import NEVER, SETTLED, UNSURE, DispatchLog, Kind
from tests.strategies import event_ids

kinds = st.sampled_from([SETTLED, UNSURE, NEVER])


def facts_of(pairs: dict[int, str], start: int = 0, stop: int = 10**9) -> AppliedFacts:
    facts = AppliedFacts(start, stop)
    facts.note(list(pairs), list(pairs.values()))
    return facts


def test_a_replayed_record_the_changelog_names_is_a_duplicate() -> None:
    facts = facts_of({5: "evt-a", 6: "evt-b"})
    assert replay_verdict(UNSURE, "evt-a", facts, redriven=False) == "duplicate"
    assert replay_verdict(UNSURE, "evt-c", facts, redriven=False) == "route"


def test_only_unsure_records_are_settled_from_the_changelog() -> None:
    facts = facts_of({5: "evt-a"})
    assert replay_verdict(NEVER, "evt-a", facts, redriven=False) == "route"
    assert replay_verdict(SETTLED, "evt-a", facts, redriven=False) == "route"


def test_a_redriven_record_takes_its_usual_route_to_lift_the_parking() -> None:
    facts = facts_of({5: "evt-a"})
    assert replay_verdict(UNSURE, "evt-a", facts, redriven=True) == "route"


def test_without_facts_nothing_is_settled_from_the_changelog() -> None:
    assert replay_verdict(UNSURE, "evt-a", None, redriven=False) == "route"


def test_only_offsets_of_the_suspect_range_are_kept() -> None:
    facts = AppliedFacts(10, 20)
    facts.note([9, 10, 19, 20], ["before", "first", "last", "after"])
    assert facts.by_offset == {10: "first", 19: "last"}
    assert not facts.holds("before")
    assert not facts.holds("after")


def test_a_changelog_record_whose_offsets_do_not_match_its_ids_vouches_for_nothing() -> None:
    facts = AppliedFacts(0, 100)
    facts.note([1, 2], ["only-one"])
    assert len(facts) == 0
    assert not facts.holds("only-one")


def test_past_the_cap_facts_are_dropped_and_the_rest_is_reconciled_as_before() -> None:
    facts = AppliedFacts(0, 1000, cap=3)
    facts.note([0, 1, 2, 3, 4], ["a", "b", "c", "d", "e"])
    assert facts.full
    assert len(facts) == 3
    assert [replay_verdict(UNSURE, e, facts, redriven=False) for e in "abcde"] == [
        "duplicate",
        "duplicate",
        "duplicate",
        "route",
        "route",
    ]
    log = DispatchLog.unsure_range(0, 1000)
    assert facts.unvouched(log) == 997
    assert listing_needed(log, facts)


def test_a_reset_range_the_changelog_vouches_for_needs_no_listing() -> None:
    log = DispatchLog.unsure_range(0, 1000)
    facts = facts_of({o: f"evt-{o}" for o in range(1000)})
    assert facts.unvouched(log) == 0
    assert not listing_needed(log, facts)
    assert listing_needed(log, None), "without the changelog a long reset range is listed"


def test_a_long_tail_the_changelog_cannot_vouch_for_is_still_listed() -> None:
    log = DispatchLog.unsure_range(0, 1000)
    applied = 1000 - BULK_MIN_RECORDS
    facts = facts_of({o: f"evt-{o}" for o in range(applied)})
    assert facts.unvouched(log) == BULK_MIN_RECORDS
    assert listing_needed(log, facts)
    facts = facts_of({o: f"evt-{o}" for o in range(applied + 1)})
    assert not listing_needed(log, facts)


def test_changelog_offsets_round_trip_and_foreign_headers_name_nothing() -> None:
    assert decode_offsets(encode_offsets([0, 7, 12_345_678_901])) == (0, 7, 12_345_678_901)
    assert decode_offsets(None) is None
    assert decode_offsets(b"") is None
    assert decode_offsets(b"1,x") is None
    assert decode_offsets(b"1,-2") is None


records = st.lists(
    st.tuples(st.integers(0, 60), event_ids, kinds, st.booleans()), max_size=40
)  # (offset, event id, kind in the inherited log, redriven)
changelog = st.lists(
    st.lists(st.tuples(st.integers(0, 60), event_ids), min_size=1, max_size=5), max_size=20
)  # changelog records: (source offset, event id) pairs


@given(
    changelog,
    records,
    st.integers(0, 30),
    st.integers(0, 40),
    st.integers(1, 50),
)
def test_the_changelog_settles_exactly_what_it_holds_in_range_and_nothing_else(
    written: list[list[tuple[int, str]]],
    replayed: list[tuple[int, str, Kind, bool]],
    start: int,
    length: int,
    cap: int,
) -> None:
    facts = AppliedFacts(start, start + length, cap=cap)
    for record in written:
        facts.note([o for o, _ in record], [e for _, e in record])
    held = {e for record in written for o, e in record if start <= o < start + length}
    assert facts.event_ids <= held, "the facts name an event the changelog never recorded here"
    assert len(facts) <= cap
    if not facts.full:
        in_range = {o for record in written for o, _ in record if start <= o < start + length}
        assert set(facts.by_offset) == in_range, "an applied offset of the range was lost"
    for _, event_id, kind, redriven in replayed:
        verdict = replay_verdict(kind, event_id, facts, redriven=redriven)
        if verdict == "duplicate":  # never settles an event the changelog does not hold
            assert event_id in held
            assert kind == UNSURE
        if kind == UNSURE and not redriven and event_id in facts.event_ids:
            assert verdict == "duplicate", "an event the changelog holds would be posted"


@given(st.lists(st.tuples(kinds, st.integers(1, 50)), max_size=10), st.sets(st.integers(0, 500)))
def test_records_left_for_a_listing_are_exactly_the_unsure_ones_without_facts(
    runs: list[tuple[Kind, int]], vouched: set[int]
) -> None:
    log = DispatchLog(0, runs)
    facts = facts_of({o: f"evt-{o}" for o in vouched})
    unsure = {o for a, b, k in log.intervals() if k == UNSURE for o in range(a, b)}
    assert facts.unvouched(log) == len(unsure - vouched)
    assert listing_needed(log, facts) == (len(unsure - vouched) >= BULK_MIN_RECORDS)
