"""`status` counts what the next owner will really reconcile: the members' rule, not a range."""

from __future__ import annotations

from consumer.core.dispatch_log import DispatchLog
from consumer.core.reconcile import encode_commit_metadata
from consumer.tools.replay import PartitionOffsets
from consumer.tools.status import partition_status


def offsets(committed: int | None, metadata: str | None, end: int) -> PartitionOffsets:
    return PartitionOffsets(partition=0, committed=committed, metadata=metadata, low=0, high=end)


def test_status_counts_only_the_unsure_runs_of_the_commits_dispatch_log() -> None:
    log = DispatchLog.decode(100, "s5u3n2")
    assert log is not None
    metadata = encode_commit_metadata(log.stop, runs=log.encode())
    status = partition_status(offsets(100, metadata, end=150), owner=None)
    assert status.to_reconcile == 3  # settled and never-dispatched records are not read


def test_status_counts_everything_to_the_end_after_a_commit_without_our_metadata() -> None:
    assert partition_status(offsets(100, None, end=150), owner=None).to_reconcile == 50


def test_status_counts_nothing_for_a_group_that_never_committed() -> None:
    assert partition_status(offsets(None, None, end=150), owner=None).to_reconcile == 0
