"""This member's share of the group's rate limit, kept current. [io]

The share itself is decided in core/budget.py (max-min fair shares of the demands every
partition's owner publishes in its commits). Here the demands are read back once per commit
interval (one OffsetFetch for the whole topic, on the Kafka thread) and the member's token bucket
is set to its share whenever they or its partitions change.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from consumer.config.settings import Settings
from consumer.core.budget import TokenBucket, fair_shares, member_share, owned_share
from consumer.core.commit_metadata import decode as decode_metadata
from consumer.core.errors import InfrastructureError
from consumer.kafka.source import KafkaSource
from consumer.member.bridge import ThreadBridge
from consumer.member.holdings import Holdings
from consumer.ops.metrics import Metrics

_log = structlog.get_logger("engine")


class BudgetShare:
    """Sets `budget` to this member's share; `total_partitions` is set once the member knows
    the topic (0 until then: no demands are read)."""

    def __init__(
        self,
        settings: Settings,
        source: KafkaSource,
        budget: TokenBucket,
        *,
        held: Holdings,
        bridge: ThreadBridge,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self._source = source
        self._budget = budget
        self._held = held
        self._bridge = bridge
        self._metrics = metrics
        self._clock = clock
        self._limit = settings.dr_rate_limit
        self._interval = settings.commit_interval
        self.total_partitions = 0
        self._demands: dict[int, float] = {}  # partition -> demand its owner last published
        self._next_share = 0.0

    def rebudget(self) -> None:
        """This member's share: its partitions' fair shares of the group limit, from the demands
        the group last published (budget.py); proportional to partitions until one is known."""
        limit = self._limit
        if self._demands:
            every = dict.fromkeys(range(max(1, self.total_partitions)), 0.0) | self._demands
            share = owned_share(fair_shares(limit, every), self._held.partitions)
            share = max(share, min(limit, 1e-3))  # a bucket needs a rate > 0; posts need work
        else:
            share = member_share(limit, len(self._held.partitions), max(1, self.total_partitions))
        self._budget.set_rate(share, self._clock())
        self._metrics.set_budget_rate(share)
        self._metrics.set_rate_limit(limit)

    async def share(self) -> None:
        """Every commit interval: read the demand every partition's owner published in its
        commit (one OffsetFetch for the whole topic) and take this member's fair share."""
        now = self._clock()
        if now < self._next_share or self.total_partitions <= 0:
            return
        self._next_share = now + self._interval
        try:
            # one quick try: the Kafka thread also runs the loop's commits and fetches
            committed = await self._bridge.kafka(
                self._source.committed, range(self.total_partitions), 2.0, 1
            )
        except InfrastructureError as exc:
            _log.warning("demand_read_failed", error=str(exc))
            return  # keep the last share: the commits will be read again next interval
        demands: dict[int, float] = {}
        for c in committed:
            decoded = decode_metadata(c.metadata)
            known = decoded.demand if decoded is not None else None
            demands[c.partition] = known if known is not None else 0.0
        self._demands = demands
        self.rebudget()
