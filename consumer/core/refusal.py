"""Which event of a refused coalesced batch really fails: a bisection in offset order. [pure]

When Digital River refuses a multi-event POST as a whole (a 409 over-fulfilment caused by its last
event, a 400 on one event), parking the whole batch would park events that apply on their own
(issue #9). `SplitSearch` finds the first event that fails: it posts the first half of what is
known to be refused; a refused half holds the culprit (the rest waits behind it), an applied half
moves the search past it. Events before the culprit apply, the culprit and every later event of
the order park: the order's events still reach Digital River in offset order and nothing
overtakes a parked event.

Each step is one POST; about 2 x log2(n) POSTs for a batch of n. Only what a refusal proves is
trusted: what is left after an applied half is posted whole before it is cut again (the state of
the order may explain the refusal only together with what was just applied).
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.core.lanes import PendingEvent


@dataclass(frozen=True, slots=True)
class SplitSearch:
    """`applied`: posted and applied during the search; `todo`: where the culprit is searched;
    `behind`: later events that park with the culprit; `refused`: `todo` as a whole was refused."""

    applied: tuple[PendingEvent, ...]
    todo: tuple[PendingEvent, ...]
    behind: tuple[PendingEvent, ...]
    refused: bool

    @classmethod
    def of_refused(cls, entries: tuple[PendingEvent, ...]) -> SplitSearch:
        """Start from `entries`, which Digital River just refused as one POST."""
        if not entries:
            raise ValueError("nothing to split")
        return cls((), entries, (), True)

    @property
    def culprit_found(self) -> bool:
        """`todo` is one event that was refused on its own: it and `behind` park."""
        return self.refused and len(self.todo) == 1

    @property
    def finished(self) -> bool:
        """Everything applied: the refusal went away (nothing parks)."""
        return not self.todo and not self.behind

    @property
    def parked(self) -> tuple[PendingEvent, ...]:
        return self.todo + self.behind if self.culprit_found else ()

    def next_part(self) -> tuple[PendingEvent, ...]:
        """The events to POST next as one request (never called when found or finished)."""
        if self.culprit_found or self.finished:
            raise ValueError("the search is over")
        if not self.refused:
            return self.todo
        return self.todo[: len(self.todo) // 2]

    def answered(self, part: tuple[PendingEvent, ...], applied: bool) -> SplitSearch:
        """`part` (from `next_part`) was applied, or refused for a reason of its own."""
        if part != self.todo[: len(part)] or not part:
            raise ValueError("not the part this search asked for")
        if not applied:
            return SplitSearch(self.applied, part, self.todo[len(part) :] + self.behind, True)
        rest = self.todo[len(part) :]
        if not rest:  # all of `todo` applied: the culprit, if any, is behind it
            return SplitSearch(self.applied + part, self.behind, (), False)
        return SplitSearch(self.applied + part, rest, self.behind, False)
