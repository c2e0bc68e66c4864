"""Deduplication decisions: which pending events Digital River already has. [pure]

Digital River has no idempotency key (`DR-API.md`, "No idempotency"), so before re-posting after
an ambiguous failure, after a 409, or for records a previous owner of the partition may have
posted, a batch's trip (digitalriver/delivery.py) lists the order's fulfillments, asks
`split_applied` which events their metadata already names (`fulfillments.event_ids_of`) and
`decide` what follows: settle those, post the rest, or park the order after a real conflict.

Crash recovery: every offset commit carries a *dispatch horizon* in its metadata — 1 + the highest
offset whose events were ever POSTed in that partition. After a rebalance or restart, records in
[committed, horizon) may have reached Digital River without being committed: they are suspect and
reconciled first. A commit without our metadata (offsets moved by another tool) means the
horizon is unknown: then everything from the committed offset up to the partition's end offset
at assignment time is suspect; a group that never committed starts fresh. The engine, `status`
and `replay` all take this from `SuspectRange`, and the horizon is carried forward
(`SuspectRange.carry`) so a crash before the range was re-processed does not forget it.

A listing only proves what Digital River had *when it was taken*: a POST abandoned at revoke, or
one that timed out on the client, may still be applied after it. So each commit also records
its wall-clock time (`fc1:horizon=N;at=<epoch ms>`; metadata without `at`, from older members,
still reads), and the next owner acts on no listing of a suspect order taken before
`listing_not_before` — the later of that time and its own assignment, plus the client timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from consumer.core import commit_metadata
from consumer.core.decisions import Park, Reconcile
from consumer.core.fulfillments import event_ids_of
from consumer.core.lanes import PendingEvent

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


def decide(result: ReconcileResult, conflict: Reconcile | None) -> ReconcileResult | Park:
    """Settle what is applied and post the rest (`result` as it is), unless a 409 (`conflict`)
    is not explained by applied events: then the order parks.

    After a 409, if some of the batch was already applied the conflict may be ours (re-sending
    units Digital River has) and the rest is posted again; if none was, the conflict is real and
    the remaining events park. Each round either settles, parks or shrinks the batch, so the loop
    ends.
    """
    if conflict is not None and not result.applied and result.remaining:
        return conflict.unexplained()
    return result


def encode_commit_metadata(
    horizon: int,
    at_ms: int | None = None,
    *,
    demand: float | None = None,
    runs: str | None = None,
) -> str:
    """Offset-commit metadata recording the dispatch horizon of the partition and, optionally,
    the wall-clock time of the commit (epoch ms), its demand for the rate budget and its dispatch
    log; the format is commit_metadata.py's."""
    metadata = commit_metadata.CommitMetadata(horizon, demand, runs, at_ms=at_ms)
    return commit_metadata.encode(metadata)


def decode_commit_metadata(text: str | None) -> int | None:
    """The horizon an earlier commit recorded; None for no, foreign or garbled metadata."""
    decoded = commit_metadata.decode(text)
    return None if decoded is None else decoded.horizon


def decode_commit_time(text: str | None) -> int | None:
    """When an earlier commit was written (epoch ms); None when it did not say (older members,
    other tools, nothing unsure) or the metadata is not ours."""
    decoded = commit_metadata.decode(text)
    return None if decoded is None else decoded.at_ms


def listing_not_before(
    committed_at: float | None, assigned_at: float, client_timeout: float
) -> float:
    """The wall-clock time (seconds) from which a listing of a suspect order can be acted on.

    A previous owner's POST can land until its client gave up on it: `client_timeout` after it
    was sent. It was sent before that owner's last commit (`committed_at`) if it handed the
    partition over (revoke drains or abandons every POST first), and before our assignment
    (`assigned_at`) in any case: a crashed or frozen owner posts nothing once its lease ended
    (lease.py), and the lease ends before the broker can give the partition to anyone else.
    Both times count (the later wins) so that a skewed clock on either side is covered.
    """
    start = assigned_at if committed_at is None else max(committed_at, assigned_at)
    return start + client_timeout


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
