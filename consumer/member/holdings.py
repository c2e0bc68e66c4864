"""What a member holds, shared by the loop and the collaborators it is composed of. [io]

Everything here belongs to the asyncio event loop: the engine (engine.py), the rebalancer
(membership.py), the committer (commits.py), the budget share (budget_share.py) and the bulk
lister (listing.py) each get the one `Holdings` and read or change it only on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.core.partition import PartitionState
from consumer.kafka.records import SourceRecord

State = PartitionState[SourceRecord]


@dataclass
class EngineStats:
    """Counters for progress output and benchmarks (metrics build on these)."""

    records: int = 0
    events_settled: int = 0
    posts: int = 0
    reads: int = 0
    already_applied: int = 0
    duplicates: int = 0  # events whose eventId was applied before (a producer's republish)
    dead_lettered: int = 0
    parked: int = 0
    commits: int = 0


@dataclass(eq=False)
class Holdings:
    """The state of each partition assigned to this member, and how many batches are out or
    proposed over all of them (what the in-flight cap counts)."""

    partitions: dict[int, State] = field(default_factory=dict)
    in_flight: int = 0

    def owns(self, ps: State) -> bool:
        """Whether `ps` is still the state of its partition here (not revoked, lost or replaced)."""
        return self.partitions.get(ps.partition) is ps

    def drop(self, partition: int) -> State | None:
        """The partition goes: its proposed batches never went, so they leave the in-flight count
        (launched ones leave it when their task ends)."""
        ps = self.partitions.pop(partition, None)
        if ps is not None:
            self.in_flight -= len(ps.proposed)
        return ps
