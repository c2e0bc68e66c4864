"""SplitSearch: a refused coalesced batch applies what applies alone and parks from the culprit."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.lanes import PendingEvent
from consumer.core.refusal import SplitSearch
from tests.event_builders import shipment


def entries(count: int) -> tuple[PendingEvent, ...]:
    return tuple(PendingEvent(10 + i, shipment(f"evt-{i}")) for i in range(count))


Refuses = Callable[[tuple[PendingEvent, ...], tuple[PendingEvent, ...]], bool]


def run(batch: tuple[PendingEvent, ...], refuses: Refuses) -> tuple[SplitSearch, int]:
    """Drive the search against `refuses(applied_so_far, part) -> bool`; count the POSTs."""
    search = SplitSearch.of_refused(batch)
    posts = 0
    while not (search.culprit_found or search.finished):
        part = search.next_part()
        posts += 1
        search = search.answered(part, applied=not refuses(search.applied, part))
    return search, posts


@given(size=st.integers(min_value=2, max_value=40), data=st.data())
def test_with_one_bad_event_everything_before_it_applies_and_it_parks_with_what_follows(
    size: int, data: st.DataObject
) -> None:
    batch = entries(size)
    bad = data.draw(st.integers(min_value=0, max_value=size - 1))

    def refuses(_applied: tuple[PendingEvent, ...], part: tuple[PendingEvent, ...]) -> bool:
        return batch[bad] in part

    search, posts = run(batch, refuses)
    assert search.applied == batch[:bad]
    assert search.parked == batch[bad:]
    assert posts <= 2 * math.ceil(math.log2(size)) + 1


@given(
    quantities=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=30),
    room=st.integers(min_value=0, max_value=60),
)
def test_over_fulfilment_applies_exactly_the_events_that_fit_in_offset_order(
    quantities: list[int], room: int
) -> None:
    """The line has `room` units left; a POST is refused when it asks for more than is left."""
    batch = entries(len(quantities))
    units = {e.offset: q for e, q in zip(batch, quantities, strict=True)}
    if sum(quantities) <= room:
        return  # the batch would not have been refused

    def refuses(applied: tuple[PendingEvent, ...], part: tuple[PendingEvent, ...]) -> bool:
        left = room - sum(units[e.offset] for e in applied)
        return sum(units[e.offset] for e in part) > left

    search, _ = run(batch, refuses)
    fits = 0
    while sum(quantities[: fits + 1]) <= room:
        fits += 1
    assert search.applied == batch[:fits]
    assert search.parked == batch[fits:]
    assert search.applied + search.parked == batch, "nothing lost, offset order kept"


def test_a_refusal_that_goes_away_applies_everything_and_parks_nothing() -> None:
    batch = entries(5)
    search, _ = run(batch, lambda _applied, _part: False)
    assert search.finished
    assert search.applied == batch
    assert search.parked == ()


def test_a_part_the_search_did_not_ask_for_is_refused() -> None:
    search = SplitSearch.of_refused(entries(4))
    with pytest.raises(ValueError, match="not the part"):
        search.answered(entries(4)[1:2], applied=True)
