"""DispatchLog: what a successor must reconcile is what may really have been posted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dispatch_log import NEVER, SETTLED, UNSURE, DispatchLog, Kind

kinds: st.SearchStrategy[Kind] = st.sampled_from([SETTLED, UNSURE, NEVER])
run_lists = st.lists(st.tuples(kinds, st.integers(min_value=1, max_value=40)), max_size=80)
starts = st.integers(min_value=0, max_value=10_000)

SAFE: dict[Kind, set[Kind]] = {
    UNSURE: {UNSURE},  # may have been posted: must be reconciled
    SETTLED: {SETTLED, UNSURE},  # at Digital River: skipped, or at worst read
    NEVER: {NEVER, UNSURE},  # never posted: posted, or at worst read first
}


def _kinds_per_offset(start: int, runs: list[tuple[Kind, int]]) -> dict[int, Kind]:
    out: dict[int, Kind] = {}
    at = start
    for kind, n in runs:
        for o in range(at, at + n):
            out[o] = kind
        at += n
    return out


@given(starts, run_lists)
def test_every_offset_reads_back_as_the_kind_it_was_written_with(
    start: int, runs: list[tuple[Kind, int]]
) -> None:
    log = DispatchLog(start, runs)
    back = DispatchLog.decode(start, log.encode(max_chars=10_000))
    assert back == log
    truth = _kinds_per_offset(start, runs)
    for offset, kind in truth.items():
        assert back.kind_at(offset) == kind
    assert back.kind_at(start + sum(n for _, n in runs) + 5) == NEVER


@given(starts, run_lists, st.integers(min_value=16, max_value=120))
def test_a_coarsened_log_fits_and_never_turns_a_posted_record_into_a_skipped_or_new_one(
    start: int, runs: list[tuple[Kind, int]], max_chars: int
) -> None:
    log = DispatchLog(start, runs)
    text = log.encode(max_chars)
    assert len(text) <= max(max_chars, len(DispatchLog.unsure_range(start, log.stop).text()))
    back = DispatchLog.decode(start, text)
    assert back is not None
    for offset, kind in _kinds_per_offset(start, runs).items():
        assert back.kind_at(offset) in SAFE[kind], (offset, kind, text)
    assert back.stop <= log.stop


def test_a_crowded_log_degrades_to_reads_of_the_short_gaps_first() -> None:
    runs: list[tuple[Kind, int]] = [(SETTLED, 50), (NEVER, 1)] * 30 + [(UNSURE, 2)]
    log = DispatchLog(100, runs)
    assert log.encode(max_chars=20) == "s50u1482"


@given(starts, run_lists, st.dictionaries(st.integers(0, 12_000), kinds, max_size=60), starts)
def test_an_owner_s_own_knowledge_overrides_what_it_inherited(
    base_start: int,
    runs: list[tuple[Kind, int]],
    own: dict[int, Kind],
    start: int,
) -> None:
    base = DispatchLog(base_start, runs)
    merged = DispatchLog.overlay(start, base, own)
    assert merged.start == start
    for offset in range(start, max(start, base.stop) + 3):
        expected = own.get(offset, base.kind_at(offset))
        assert merged.kind_at(offset) == expected
    for offset, kind in own.items():
        if offset >= start:
            assert merged.kind_at(offset) == kind


@given(st.text(alphabet="sun0123456789x", max_size=30))
def test_decoding_any_text_never_raises(text: str) -> None:
    decoded = DispatchLog.decode(7, text)
    assert decoded is None or decoded.start == 7


def test_offsets_below_the_start_are_unsure_and_past_the_runs_never_dispatched() -> None:
    log = DispatchLog(10, [(SETTLED, 2), (UNSURE, 1)])
    assert [log.kind_at(o) for o in (9, 10, 11, 12, 13)] == [
        UNSURE,
        SETTLED,
        SETTLED,
        UNSURE,
        NEVER,
    ]
    assert log.stop == 13
    assert log.count(SETTLED) == 2
    assert DispatchLog.decode(10, "s2x") is None
