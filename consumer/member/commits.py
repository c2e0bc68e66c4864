"""Offset commits: when to commit, and making the commit. [io]

What each commit carries is decided in core/commit_plan.py; here it is timed (periodic every
`commit_interval`, at once for batches waiting to be listed as unsure), made synchronously on
the Kafka thread, and remembered once the coordinator accepted it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog

from consumer.config.settings import Settings
from consumer.core.commit_plan import (
    CommitPlan,
    Commits,
    confirm_commits,
    final_commits,
    plan_commits,
    proof_commits,
)
from consumer.core.errors import InfrastructureError
from consumer.core.lanes import Batch
from consumer.kafka.records import SourceRecord
from consumer.kafka.source import KafkaSource
from consumer.member.holdings import EngineStats, Holdings, State

_log = structlog.get_logger("engine")


def wall_ms() -> int:
    return int(time.time() * 1000)


class Committer:
    """Plans commits on the loop, makes them on the Kafka thread (`commit_now`)."""

    def __init__(
        self,
        settings: Settings,
        source: KafkaSource,
        held: Holdings,
        stats: EngineStats,
        *,
        clock: Callable[[], float],
        wall_clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._source = source
        self._held = held
        self._stats = stats
        self._clock = clock
        self._wall_ms = wall_clock_ms
        self._interval = settings.commit_interval
        self._rate_limit = settings.dr_rate_limit
        self._next_commit = 0.0

    def plan(self) -> CommitPlan[SourceRecord]:
        """What to commit on this pass: batches waiting for a commit always, changes once per
        commit interval."""
        now = self._clock()
        periodic = now >= self._next_commit
        if periodic:
            self._next_commit = now + self._interval
        return plan_commits(
            self._held.partitions,
            periodic=periodic,
            rate_limit=self._rate_limit,
            now_ms=self._wall_ms(),
        )

    def with_proof(self, plan: CommitPlan[SourceRecord]) -> CommitPlan[SourceRecord]:
        """`plan` plus every owned partition where it stands: after the membership lease lapsed,
        an accepted commit is what proves this member still owns them (fencing)."""
        proof = proof_commits(
            self._held.partitions, rate_limit=self._rate_limit, now_ms=self._wall_ms()
        )
        return CommitPlan({**proof, **plan.commits}, plan.covered)

    def final(self, states: Iterable[State]) -> Commits:
        """The commits for partitions that go (revoke, shutdown)."""
        return final_commits(states, rate_limit=self._rate_limit, now_ms=self._wall_ms())

    def confirm(self, plan: CommitPlan[SourceRecord]) -> list[tuple[State, Batch]]:
        """The commits of `plan` went through: remember them; the batches listed may go now."""
        confirmed, launch = confirm_commits(self._held.partitions, plan)
        self._stats.commits += confirmed
        return launch

    def commit_now(self, commits: Commits, when: str) -> bool:
        """Kafka thread: commit (offset, metadata) per partition synchronously; False if refused."""
        if not commits:
            return True
        try:
            self._source.commit(
                {p: o for p, (o, _) in commits.items()},
                metadata={p: m for p, (_, m) in commits.items()},
                sync=True,
            )
        except InfrastructureError as exc:
            _log.warning("offset_commit_failed", when=when, error=str(exc))
            return False
        if when != "running":
            _log.info(
                f"offsets_committed_on_{when}", offsets={p: o for p, (o, _) in commits.items()}
            )
        return True
