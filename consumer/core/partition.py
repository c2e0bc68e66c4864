"""What a member holds for one assigned partition while it owns it. [pure]

Records go from the consumer straight into the lanes (through `undecoded` first, in offset
order, when a writer schema must be fetched from the registry). A batch the lanes hand out is
only POSTed once a commit's metadata lists its offsets as unsure (`dispatch_log.py`): until
then it waits in `proposed`; the next synchronous commit writes the partition's dispatch log
(settled / unsure / never dispatched past the committed offset) and the engine launches what it
covered. So whoever owns the partition next — after a crash, a kill -9 or a rebalance —
reconciles exactly what may have been posted (`inherited` on its side), settles without a
request what was settled or what the applied-events changelog names exactly (`facts`), and
posts the rest as usual; it acts on no listing before the previous owner's POSTs can no longer
land (`listing_not_before`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consumer.core.applied_facts import AppliedFacts, listing_needed
from consumer.core.bulk_reconcile import Coverage
from consumer.core.deadletters import ParkedOrder
from consumer.core.dispatch_log import SETTLED, UNSURE, DispatchLog, Kind
from consumer.core.events import FulfillmentEvent
from consumer.core.lanes import Batch, CoalescingPolicy, PartitionLanes
from consumer.core.watermark import OffsetWatermark

R = TypeVar("R")
_REBUILD_AFTER = 64  # records: below this a dict's table is too small to be worth rebuilding


@dataclass(eq=False)
class PartitionState(Generic[R]):
    """Mutable by the engine's event loop only."""

    partition: int
    policy: CoalescingPolicy
    committed: int | None  # committed offset when assigned (None: never committed)
    inherited: DispatchLog  # what the previous owner (or a replay) left past `committed`
    lanes: PartitionLanes = field(init=False)
    watermark: OffsetWatermark = field(default_factory=OffsetWatermark)
    records: dict[int, R] = field(default_factory=dict)  # every unsettled record, for DLQ / parking
    undecoded: deque[R] = field(default_factory=deque)  # waiting for a writer schema, in order
    doubt: set[int] = field(default_factory=set)  # confirmed unsure: dispatched, not settled
    proposed: list[Batch] = field(default_factory=list)  # handed out, waiting for a commit
    parked: dict[str, ParkedOrder] = field(default_factory=dict)  # order id -> why
    attempts: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_committed: int | None = None
    last_metadata: str | None = None  # the metadata of the last confirmed commit
    paused: bool = False
    revoking: bool = False
    listing_not_before: float = 0.0  # suspect orders are not looked up before (clock time)
    # a long unsure range is reconciled by listing (bulk_reconcile.py): until a listing begun
    # after our assignment is done, every record waits here, in offset order
    bulk_held: deque[tuple[R, FulfillmentEvent]] | None = None
    bulk_coverage: Coverage | None = None
    # what the applied-events changelog proves applied in the inherited range (applied_facts.py):
    # dropped once that range has been read
    facts: AppliedFacts | None = None
    _peak_records: int = field(default=0, repr=False)  # since `records` was last rebuilt

    def __post_init__(self) -> None:
        self.lanes = PartitionLanes(self.partition, self.policy)
        self.last_committed = self.committed
        if self.facts is not None and not self.inherited.count(UNSURE):
            self.facts = None  # nothing inherited is unsure: nothing for them to vouch for
        if listing_needed(self.inherited, self.facts):
            self.bulk_held = deque()

    def commit_offset(self) -> int | None:
        """What to commit now: the watermark, else where we started (to carry the log)."""
        settled = self.watermark.committable()
        if settled is not None:
            return settled
        if self.last_committed is not None:
            return self.last_committed
        return self.watermark.oldest_unsettled()

    def covers(self, batch: Batch) -> bool:
        """Whether a confirmed commit already lists every offset of `batch` as unsure (a retry
        of the same events): it may go without another commit."""
        return all(offset in self.doubt for offset in batch.offsets)

    def dispatch_log(self, offset: int, *, with_proposed: bool = True) -> DispatchLog:
        """The log to write with a commit at `offset`: our settled records, our unsure ones (and
        the proposed batches, which may go once this commit is confirmed), and for records we
        have not settled what the previous owner left."""
        own: dict[int, Kind] = dict.fromkeys(self.watermark.settled_ahead(), SETTLED)
        own.update(dict.fromkeys(self.doubt, UNSURE))
        if with_proposed:
            for batch in self.proposed:
                own.update(dict.fromkeys(batch.offsets, UNSURE))
        return DispatchLog.overlay(offset, self.inherited, own)

    def confirm(self, batches: list[Batch]) -> None:
        """A commit listing `batches` went through: they are unsure from now on and may go."""
        for batch in batches:
            self.doubt.update(batch.offsets)
        gone = {id(b) for b in batches}
        self.proposed = [b for b in self.proposed if id(b) not in gone]

    def keep(self, record: R, offset: int) -> None:
        """Hold `record` until it is settled (for the dead-letter and parking topics)."""
        self.records[offset] = record
        self._peak_records = max(self._peak_records, len(self.records))

    def settle(self, offset: int) -> None:
        self.records.pop(offset, None)
        self.doubt.discard(offset)
        self.watermark.settle(offset)
        if not self.records and self._peak_records > _REBUILD_AFTER:
            # the backlog is gone: a dict keeps the table it grew to, a new one starts small
            self.records, self.attempts, self._peak_records = {}, dict(self.attempts), 0

    def footprint(self) -> dict[str, int]:
        """Entries held per structure (lanes and watermark included): what a settled partition
        still holds is the orders parked here and nothing else."""
        return {
            "records": len(self.records),
            "undecoded": len(self.undecoded),
            "doubt": len(self.doubt),
            "proposed": len(self.proposed),
            "bulk_held": len(self.bulk_held or ()),
            "bulk_coverage": len(self.bulk_coverage.applied) if self.bulk_coverage else 0,
            "facts": len(self.facts or ()),
            "attempts": len(self.attempts),
            "tasks": len(self.tasks),
            **{f"lanes.{k}": v for k, v in self.lanes.footprint().items()},
            **{f"watermark.{k}": v for k, v in self.watermark.footprint().items()},
        }

    @property
    def buffered(self) -> int:
        return len(self.records)


def inherited_log(
    committed: int | None, horizon: int | None, runs: str | None, end_offset: int
) -> DispatchLog:
    """What a new owner must assume past `committed`, from the commit's metadata.

    `committed` None: the group never committed here; a new group starts fresh (nothing of it can
    be at Digital River; `replay` is how history is reprocessed). `horizon` None: offsets moved
    by another tool (`kafka-consumer-groups --reset-offsets`): everything up to `end_offset`, the
    high watermark when assigned, is unsure. A horizon without (readable) runs: [committed,
    horizon) is unsure (an older member, or `replay`)."""
    if committed is None:
        return DispatchLog(0)
    if horizon is None:
        return DispatchLog.unsure_range(committed, max(committed, end_offset))
    if runs is not None:
        decoded = DispatchLog.decode(committed, runs)
        if decoded is not None:
            return decoded
    return DispatchLog.unsure_range(committed, max(committed, horizon))
