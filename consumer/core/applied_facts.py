"""What the applied-events changelog proves about a replayed range, exactly. [pure]

Every batch a member settles as applied is written to the changelog (`<topic>.applied`,
`kafka/changelog.py`) before its source offsets may be committed, with its event ids and, since
this module, the source offsets they came from (header `fc.offsets`). So when a member takes a
partition whose records past the committed offset are unsure (a reset by `kafka-consumer-groups
--reset-offsets`, `replay`, a takeover after a crash), the changelog says exactly which of them
were applied. The member's `SeenFilter` says the same only probabilistically (a hit costs a read);
`AppliedFacts` keeps the exact event ids, for the suspect range only:

- `note(offsets, event_ids)` while the changelog is read at assignment: pairs whose source offset
  lies in [start, stop) are kept, up to `cap` (then `full` is True and the rest is dropped: those
  records are simply not vouched for, and go the listing / per-order way as before);
- `replay_verdict` (the decision): an unsure record whose event id the changelog holds exactly is
  settled as a `duplicate`, with no request; any other record is routed as before;
- `listing_needed`: whether the unsure records the changelog cannot vouch for are still enough
  for a bulk listing (`bulk_reconcile.BULK_MIN_RECORDS`).

Why an event id in the changelog may be settled: a changelog record is written only after
Digital River applied (or was found to hold) those events, so the event is there whatever
offset it is read at now. The converse does not hold (an event applied by a member that died
before its changelog write was acknowledged is not in it), which is why a record the changelog
does not name is never settled here.

Memory: about 150 bytes per event id held (the id and two table entries), `FACTS_CAP` ids per
partition at most: 15 MB per partition, held only until the partition's inherited range has been
read (the engine drops it then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from consumer.core.bulk_reconcile import BULK_MIN_RECORDS
from consumer.core.dispatch_log import UNSURE, DispatchLog, Kind

FACTS_CAP: Final = 100_000
"""Event ids kept per partition; past it the range's tail is reconciled as before."""

ReplayVerdict: TypeAlias = Literal["duplicate", "route"]


@dataclass(slots=True)
class AppliedFacts:
    """Event ids the changelog recorded as applied for source offsets in [start, stop).
    Mutable while the changelog is read (Kafka thread), read-only after (the event loop)."""

    start: int
    stop: int
    cap: int = FACTS_CAP
    by_offset: dict[int, str] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    full: bool = False  # the cap was reached: some pairs of the range were dropped

    def note(self, offsets: Sequence[int], event_ids: Sequence[str]) -> None:
        """One changelog record: `event_ids[i]` was applied from source offset `offsets[i]`.
        A record whose two lists differ in length is not ours to trust: ignored."""
        if len(offsets) != len(event_ids):
            return
        for offset, event_id in zip(offsets, event_ids, strict=True):
            if not self.start <= offset < self.stop or offset in self.by_offset:
                continue
            if len(self.by_offset) >= self.cap:
                self.full = True
                return
            self.by_offset[offset] = event_id
            self.event_ids.add(event_id)

    def holds(self, event_id: str) -> bool:
        return event_id in self.event_ids

    def unvouched(self, log: DispatchLog) -> int:
        """Unsure records of `log` the changelog says nothing about, by their offsets."""
        vouched = sum(1 for offset in self.by_offset if log.kind_at(offset) == UNSURE)
        return log.count(UNSURE) - vouched

    def __len__(self) -> int:
        return len(self.by_offset)


def replay_verdict(
    kind: Kind, event_id: str, facts: AppliedFacts | None, *, redriven: bool
) -> ReplayVerdict:
    """An inherited record's fate by the changelog: `duplicate` (settle it, no request) only
    when it is unsure and the changelog holds its event id exactly. A redriven record always
    takes its usual route: it is what lifts its order's parking."""
    if kind == UNSURE and not redriven and facts is not None and facts.holds(event_id):
        return "duplicate"
    return "route"


def listing_needed(log: DispatchLog, facts: AppliedFacts | None) -> bool:
    """Whether a new owner holds its records for a bulk listing: only when the unsure records
    the changelog cannot vouch for are many (the vouched ones are settled without it)."""
    unsure = log.count(UNSURE) if facts is None else facts.unvouched(log)
    return unsure >= BULK_MIN_RECORDS
