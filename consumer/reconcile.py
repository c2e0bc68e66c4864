"""Deduplication decisions: which pending events Digital River already has. [pure]

Digital River has no idempotency key (`DR-API.md`, "No idempotency"), so before re-posting after
an ambiguous failure, after a 409, or for records a previous owner of the partition may have
posted, the engine lists the order's fulfillments and asks `split_applied` which events their
metadata already names (`fulfillments.event_ids_of`).

Crash recovery: every offset commit carries a *dispatch horizon* in its metadata — 1 + the highest
offset whose events were ever POSTed in that partition. After a rebalance or restart, records in
[committed, horizon) may have reached Digital River without being committed: they are suspect and
reconciled first. A commit without our metadata (offsets moved by another tool) means the
horizon is unknown: then everything from the committed offset up to the partition's end offset
at assignment time is suspect; a group that never committed starts fresh. The engine, `status`
and `replay` all take this from `SuspectRange`, and the horizon is carried forward
(`SuspectRange.carry`) so a crash before the range was re-processed does not forget it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from consumer import commit_metadata
from consumer.fulfillments import event_ids_of
from consumer.lanes import PendingEvent

COMMIT_METADATA_PREFIX: Final = commit_metadata.PREFIX


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """Pending events split into those Digital River already has and the rest, in offset order."""

    applied: tuple[PendingEvent, ...]
    remaining: tuple[PendingEvent, ...]


def split_applied(
    pending: Sequence[PendingEvent], fulfillments: Iterable[Mapping[str, object]]
) -> ReconcileResult:
    """Which of `pending` a fulfillment's metadata already names (fulfillments of one order)."""
    seen: set[str] = set()
    for fulfillment in fulfillments:
        seen |= event_ids_of(fulfillment)
    applied = tuple(entry for entry in pending if entry.event.event_id in seen)
    remaining = tuple(entry for entry in pending if entry.event.event_id not in seen)
    return ReconcileResult(applied, remaining)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a batch's events once Digital River has been looked at."""

    settle: tuple[PendingEvent, ...]  # already applied: settle without posting
    post: tuple[PendingEvent, ...]  # not there: post them (in offset order)
    park: tuple[PendingEvent, ...]  # a real conflict: park the order from these on


def decide(result: ReconcileResult, *, after_conflict: bool) -> Decision:
    """Settle what is applied; post the rest, unless a 409 is not explained by applied events.

    After a 409, if some of the batch was already applied the conflict may be ours (re-sending
    units Digital River has) and the rest is posted again; if none was, the conflict is real and
    the remaining events park. Each round either settles, parks or shrinks the batch, so the loop
    ends.
    """
    if after_conflict and not result.applied and result.remaining:
        return Decision((), (), result.remaining)
    return Decision(result.applied, result.remaining, ())


def encode_commit_metadata(
    horizon: int, *, demand: float | None = None, runs: str | None = None
) -> str:
    """Offset-commit metadata recording the dispatch horizon of the partition (and, optionally,
    its demand for the rate budget and its dispatch log); the format is commit_metadata.py's."""
    return commit_metadata.encode(commit_metadata.CommitMetadata(horizon, demand, runs))


def decode_commit_metadata(text: str | None) -> int | None:
    """The horizon an earlier commit recorded; None for no, foreign or garbled metadata."""
    decoded = commit_metadata.decode(text)
    return None if decoded is None else decoded.horizon


@dataclass(frozen=True, slots=True)
class SuspectRange:
    """Offsets [start, stop) of one partition that a previous owner may have posted.

    Built once per assignment; `offset in suspect` is the cheap per-record test. An offset below
    `start` is a settled record read again (only a seek back does that): suspect as well.
    """

    start: int
    stop: int

    @classmethod
    def at_assignment(
        cls, committed: int | None, horizon: int | None, end_offset: int
    ) -> SuspectRange:
        """`committed`: the group's committed offset (None: the group never committed here: a
        new group starts fresh, nothing of it can be at Digital River; `replay` is how history
        is reprocessed); `horizon`: `decode_commit_metadata` of that commit (None: offsets moved
        by another tool, so everything up to `end_offset`, the high watermark when assigned)."""
        if committed is None:
            return cls(0, 0)
        start = committed
        stop = end_offset if horizon is None else horizon
        return cls(start, max(start, stop))

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and offset < self.stop

    def carry(self, dispatched_up_to: int | None) -> int:
        """The horizon to write with the next commit: past both this range and our own posts
        (`dispatched_up_to` = 1 + the highest offset this member has POSTed, or None)."""
        return max(self.stop, dispatched_up_to or 0)
