"""OffsetWatermark: what may be committed for one partition."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.watermark import OffsetWatermark


@st.composite
def tracked_and_settle_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    offsets = sorted(draw(st.sets(st.integers(min_value=0, max_value=500), max_size=60)))
    settles = draw(st.lists(st.sampled_from(offsets), max_size=90)) if offsets else []
    return offsets, settles


def expected_committable(offsets: list[int], settled: set[int]) -> int | None:
    result = None
    for offset in offsets:
        if offset not in settled:
            break
        result = offset + 1
    return result


@given(tracked_and_settle_order())
def test_commit_never_passes_an_unsettled_offset_and_never_moves_backwards(
    case: tuple[list[int], list[int]],
) -> None:
    offsets, settles = case
    watermark = OffsetWatermark()
    for offset in offsets:
        watermark.track(offset)
    settled: set[int] = set()
    previous: int | None = None
    for offset in settles:
        watermark.settle(offset)
        settled.add(offset)
        committable = watermark.committable()
        unsettled = [o for o in offsets if o not in settled]
        if committable is not None:
            assert all(o >= committable for o in unsettled)
        if previous is not None:
            assert committable is not None
            assert committable >= previous
        previous = committable
        assert committable == expected_committable(offsets, settled)
        assert watermark.pending() == len(unsettled)
        assert watermark.oldest_unsettled() == (unsettled[0] if unsettled else None)


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=50), st.data())
def test_tracking_interleaved_with_settling_keeps_the_invariants(
    gaps: list[int], data: st.DataObject
) -> None:
    watermark = OffsetWatermark()
    offset = -1
    open_offsets: list[int] = []
    previous = None
    for gap in gaps:
        offset += gap
        watermark.track(offset)
        open_offsets.append(offset)
        while open_offsets:
            if not data.draw(st.booleans()):
                break
            chosen = data.draw(st.sampled_from(open_offsets))
            open_offsets.remove(chosen)
            watermark.settle(chosen)
            committable = watermark.committable()
            assert committable is None or all(o >= committable for o in open_offsets)
            if previous is not None:
                assert committable is not None
                assert committable >= previous
            previous = committable
    for remaining in list(open_offsets):
        watermark.settle(remaining)
    assert watermark.committable() == offset + 1
    assert watermark.pending() == 0
    assert watermark.oldest_unsettled() is None


def test_nothing_is_committable_before_the_first_offset_settles() -> None:
    watermark = OffsetWatermark()
    assert watermark.committable() is None
    watermark.track(10)
    watermark.track(11)
    watermark.settle(11)
    assert watermark.committable() is None
    assert watermark.oldest_unsettled() == 10
    watermark.settle(10)
    assert watermark.committable() == 12


def test_gaps_from_compaction_do_not_hold_the_watermark_back() -> None:
    watermark = OffsetWatermark()
    for offset in (3, 7, 20):
        watermark.track(offset)
    watermark.settle(3)
    watermark.settle(7)
    assert watermark.committable() == 8
    watermark.settle(20)
    assert watermark.committable() == 21


def test_settling_twice_is_harmless() -> None:
    watermark = OffsetWatermark()
    watermark.track(0)
    watermark.track(1)
    watermark.settle(1)
    watermark.settle(1)
    watermark.settle(0)
    watermark.settle(0)
    assert watermark.committable() == 2
    assert watermark.pending() == 0


@pytest.mark.parametrize("offset", [5, 4])
def test_offsets_must_be_tracked_in_increasing_order(offset: int) -> None:
    watermark = OffsetWatermark()
    watermark.track(5)
    with pytest.raises(ValueError, match="not above"):
        watermark.track(offset)


def test_settling_an_offset_never_tracked_is_refused() -> None:
    watermark = OffsetWatermark()
    watermark.track(5)
    with pytest.raises(ValueError, match="never tracked"):
        watermark.settle(6)
    with pytest.raises(ValueError, match="never tracked"):
        watermark.settle(4)


def test_negative_offsets_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        OffsetWatermark().track(-1)


def test_last_tracked_reports_the_highest_offset() -> None:
    watermark = OffsetWatermark()
    assert watermark.last_tracked is None
    watermark.track(4)
    watermark.track(9)
    assert watermark.last_tracked == 9


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200), st.randoms())
def test_once_every_tracked_offset_is_settled_the_watermark_holds_nothing(
    gaps: list[int], rnd: random.Random
) -> None:
    w = OffsetWatermark()
    offsets = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    for offset in offsets:
        w.track(offset)
    rnd.shuffle(offsets)
    for offset in offsets:
        w.settle(offset)
    assert w.footprint() == {"tracked": 0, "unsettled": 0, "settled": 0}
    assert w.committable() == max(offsets) + 1
