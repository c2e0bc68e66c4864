"""What a member holds for one assigned partition while it owns it. [pure]

Records move through three stages: `staged` (consumed; waiting until the committed dispatch
horizon covers them), the lanes (may be posted), settled (the watermark may pass them). The
horizon is written into the commit's metadata *before* any record below it is posted, so whoever
owns the partition next knows which records a crashed owner may have posted: those in
[committed offset, horizon) are reconciled with Digital River before being posted again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consumer.deadletters import ParkedOrder
from consumer.events import FulfillmentEvent
from consumer.lanes import CoalescingPolicy, PartitionLanes
from consumer.reconcile import SuspectRange
from consumer.watermark import OffsetWatermark

R = TypeVar("R")
_REBUILD_AFTER = 64  # records: below this a dict's table is too small to be worth rebuilding


@dataclass(frozen=True, slots=True)
class StagedEvent(Generic[R]):
    record: R
    offset: int
    event: FulfillmentEvent


@dataclass(eq=False)
class PartitionState(Generic[R]):
    """Mutable by the engine's event loop only."""

    partition: int
    policy: CoalescingPolicy
    committed: int | None  # committed offset when assigned (None: never committed)
    suspect: SuspectRange  # records a previous owner (or a replay) may have posted already
    lanes: PartitionLanes = field(init=False)
    watermark: OffsetWatermark = field(default_factory=OffsetWatermark)
    records: dict[int, R] = field(default_factory=dict)  # every unsettled record, for DLQ / parking
    staged: deque[StagedEvent[R]] = field(default_factory=deque)
    horizon: int = 0  # dispatch horizon confirmed in a commit's metadata
    dispatched_max: int = -1
    parked: dict[str, ParkedOrder] = field(default_factory=dict)  # order id -> why
    attempts: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_committed: int | None = None
    paused: bool = False
    revoking: bool = False
    _peak_records: int = field(default=0, repr=False)  # since `records` was last rebuilt

    def __post_init__(self) -> None:
        self.lanes = PartitionLanes(self.partition, self.policy)
        self.horizon = self.suspect.stop
        self.last_committed = self.committed

    def commit_offset(self) -> int | None:
        """What to commit now: the watermark, else where we started (to carry the horizon)."""
        settled = self.watermark.committable()
        if settled is not None:
            return settled
        if self.last_committed is not None:
            return self.last_committed
        return self.watermark.oldest_unsettled()

    def wanted_horizon(self) -> int | None:
        """A new horizon to confirm before the staged records may be posted, or None."""
        if self.staged and self.staged[-1].offset >= self.horizon:
            return self.staged[-1].offset + 1
        return None

    def release_horizon(self) -> int:
        """The horizon to hand over on revoke: all we (or the owner before us) may have posted."""
        return self.suspect.carry(self.dispatched_max + 1)

    def keep(self, record: R, offset: int) -> None:
        """Hold `record` until it is settled (for the dead-letter and parking topics)."""
        self.records[offset] = record
        self._peak_records = max(self._peak_records, len(self.records))

    def settle(self, offset: int) -> None:
        self.records.pop(offset, None)
        self.watermark.settle(offset)
        if not self.records and self._peak_records > _REBUILD_AFTER:
            # the backlog is gone: a dict keeps the table it grew to, a new one starts small
            self.records, self.attempts, self._peak_records = {}, dict(self.attempts), 0

    def footprint(self) -> dict[str, int]:
        """Entries held per structure (lanes and watermark included): what a settled partition
        still holds is the orders parked here and nothing else."""
        return {
            "records": len(self.records),
            "staged": len(self.staged),
            "attempts": len(self.attempts),
            "tasks": len(self.tasks),
            **{f"lanes.{k}": v for k, v in self.lanes.footprint().items()},
            **{f"watermark.{k}": v for k, v in self.watermark.footprint().items()},
        }

    @property
    def buffered(self) -> int:
        return len(self.records)
