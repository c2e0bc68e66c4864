"""What a member commits per partition, and with which metadata. [pure]

A commit's offset is the partition's watermark (settled records only, partition.py); its metadata
carries the dispatch log past that offset (dispatch_log.py), the partition's demand for the rate
budget (budget.py) and, while something is unsure, the wall-clock time a successor counts from
before it may list (reconcile.listing_not_before). No clock, no IO: `now_ms` is passed in.

- `plan_commits`, every pass of the loop: partitions whose proposed batches wait for a commit
  (they go once it is confirmed) and, when `periodic`, every partition whose offset or metadata
  changed since its last *confirmed* commit (a refused one is simply planned again).
- `confirm_commits`: the coordinator accepted; remember it and release the batches it listed.
- `final_commits`, on revoke and shutdown: where each partition stands; proposed batches are left
  out of the log, since they never went.
- `proof_commits`, after the membership lease lapsed: every owned partition where it stands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from consumer.core.budget import partition_demand
from consumer.core.dispatch_log import UNSURE
from consumer.core.lanes import Batch
from consumer.core.partition import PartitionState
from consumer.core.reconcile import encode_commit_metadata

R = TypeVar("R")
Commits = dict[int, tuple[int, str]]  # partition -> (offset, metadata)


@dataclass(frozen=True, slots=True)
class CommitPlan(Generic[R]):
    """The commits to make now, and per partition the batches they list as unsure (which may be
    POSTed once the commit is confirmed)."""

    commits: Commits
    covered: dict[int, tuple[PartitionState[R], list[Batch]]]


def commit_metadata(
    ps: PartitionState[R],
    offset: int,
    *,
    rate_limit: float,
    now_ms: int,
    with_proposed: bool = True,
) -> str:
    """The metadata of a commit of `ps` at `offset`: its dispatch log, its demand and, only while
    something is unsure, `now_ms` (when our POSTs can no longer land, a successor counts from)."""
    log = ps.dispatch_log(offset, with_proposed=with_proposed)
    demand = partition_demand(ps.buffered, rate_limit)
    at_ms = now_ms if log.count(UNSURE) else None
    return encode_commit_metadata(log.stop, at_ms, demand=demand, runs=log.encode())


def plan_commits(
    partitions: Mapping[int, PartitionState[R]], *, periodic: bool, rate_limit: float, now_ms: int
) -> CommitPlan[R]:
    """Partitions with batches waiting to be listed (always), or whose settled offset, dispatch log
    or demand changed since the last confirmed commit (only when `periodic`)."""
    commits: Commits = {}
    covered: dict[int, tuple[PartitionState[R], list[Batch]]] = {}
    for p, ps in partitions.items():
        offset = ps.commit_offset()
        if offset is None:
            continue
        if ps.proposed:
            covered[p] = (ps, list(ps.proposed))
            commits[p] = (offset, commit_metadata(ps, offset, rate_limit=rate_limit, now_ms=now_ms))
        elif periodic:
            # a changed log or demand is published even when the offset stands still
            metadata = commit_metadata(ps, offset, rate_limit=rate_limit, now_ms=now_ms)
            if offset != ps.last_committed or metadata != ps.last_metadata:
                commits[p] = (offset, metadata)
    return CommitPlan(commits, covered)


def confirm_commits(
    partitions: Mapping[int, PartitionState[R]], plan: CommitPlan[R]
) -> tuple[int, list[tuple[PartitionState[R], Batch]]]:
    """The commits of `plan` went through: each still-owned partition remembers its commit, and
    the batches it listed as unsure may go now (only on the very state the plan was made for: a
    partition revoked and assigned again meanwhile starts over). Returns how many partitions
    were confirmed, and the batches to launch."""
    confirmed = 0
    launch: list[tuple[PartitionState[R], Batch]] = []
    for p, (offset, metadata) in plan.commits.items():
        ps = partitions.get(p)
        if ps is None:
            continue
        ps.last_committed = offset
        ps.last_metadata = metadata
        confirmed += 1
        owner, batches = plan.covered.get(p, (None, []))
        if owner is ps and batches:
            ps.confirm(batches)
            launch += [(ps, batch) for batch in batches]
    return confirmed, launch


def final_commits(
    states: Iterable[PartitionState[R]], *, rate_limit: float, now_ms: int
) -> Commits:
    """Where each of `states` stands, for a partition that goes (revoke, shutdown): batches still
    waiting for a commit never went, so they are not unsure for the next owner."""
    commits: Commits = {}
    for ps in states:
        offset = ps.commit_offset()
        if offset is not None:
            commits[ps.partition] = (
                offset,
                commit_metadata(
                    ps, offset, rate_limit=rate_limit, now_ms=now_ms, with_proposed=False
                ),
            )
    return commits


def proof_commits(
    partitions: Mapping[int, PartitionState[R]], *, rate_limit: float, now_ms: int
) -> Commits:
    """After the membership lease lapsed: every owned partition, not being revoked, where it
    stands. The coordinator refuses a fenced member's commit, so only a member that still owns
    them gets through."""
    return final_commits(
        (ps for ps in partitions.values() if not ps.revoking), rate_limit=rate_limit, now_ms=now_ms
    )
