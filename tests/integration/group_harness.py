"""A real consumer group on the real broker: members are `fulfillment-consumer run` processes.

Shared by the consumer-group integration tests. Everything waits with bounded polling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at runtime, missing from the stubs
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConsumerGroupDescription,
    ResourceType,
)

from consumer.tools.demo import create_topics, member_env, publish_events, start_member
from consumer.tools.warehouse.simulator import Simulation

T = TypeVar("T")

FAST_GROUP = {
    # a killed member's partitions move within seconds, not the default 45 s. Classic members
    # only: under the consumer protocol (KIP-848) librdkafka refuses these keys and the local
    # broker's `group.consumer.*` settings give the same 6 s / 0.5 s (deploy/kafka/local_kafka.py)
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}


def fast_group_env(protocol: str) -> dict[str, str]:
    """The passthrough that makes a group of `protocol` (`consumer` or `classic`) fail over fast."""
    return dict(FAST_GROUP) if protocol.strip().lower() == "classic" else {}


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def split(simulation: Simulation, at: int) -> tuple[Simulation, Simulation, set[str]]:
    """The first `at` events, the rest, and the orders that have events on both sides."""
    before = replace(simulation, events=simulation.events[:at])
    after = replace(simulation, events=simulation.events[at:])
    both = {e.order_id for e in before.events} & {e.order_id for e in after.events}
    return before, after, both


@dataclass
class Group:
    bootstrap: str
    topic: str
    group: str
    partitions: int
    sandbox_url: str
    logs: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    members: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        bootstrap: str,
        name: str,
        *,
        partitions: int,
        sandbox_url: str,
        logs: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> Group:
        create_topics(bootstrap, name, partitions)
        env = dict(extra_env or {})
        return cls(
            bootstrap,
            name,
            f"group-{name}",
            partitions,
            sandbox_url,
            logs,
            {**fast_group_env(env.get("KAFKA_GROUP_PROTOCOL", "consumer")), **env},
        )

    def command_options(self) -> list[str]:
        """The options that point an operator command (`replay`, `status`) at this group."""
        return ["--bootstrap-servers", self.bootstrap, "--topic", self.topic, "--group", self.group]

    def publish(self, simulation: Simulation) -> int:
        return publish_events(self.bootstrap, self.topic, simulation)

    def start_member(self, **env: str) -> subprocess.Popen[bytes]:
        index = len(self.members)
        full_env = member_env(
            self.bootstrap, self.topic, self.group, self.sandbox_url, {**self.extra_env, **env}
        )
        proc = start_member(full_env, self.logs / f"member-{index}.log")
        self.members.append(proc)
        return proc

    def committed(self) -> dict[int, int]:
        """Committed offset per partition (-1 when none); rides out coordinator moves."""
        return {p: offset for p, (offset, _) in self.committed_with_metadata().items()}

    def committed_with_metadata(self) -> dict[int, tuple[int, str | None]]:
        """(committed offset or -1, its metadata) per partition; rides out coordinator moves."""
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        return self._asked_again(
            lambda c: {
                tp.partition: (tp.offset, tp.metadata) for tp in c.committed(tps, timeout=10)
            }
        )

    def end_offsets(self) -> dict[int, int]:
        """End offset per partition; rides out a loaded broker (unknown partition at first)."""
        return self._asked_again(
            lambda c: {
                p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in range(self.partitions)
            }
        )

    def _asked_again(self, ask: Callable[[Consumer], T]) -> T:
        """`ask` of a consumer of this group, asked up to 20 times 0.5 s apart while it raises."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            for attempt in range(20):
                try:
                    return ask(consumer)
                except KafkaException:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
            raise AssertionError("unreachable")
        finally:
            consumer.close()

    def reset_to_earliest_without_metadata(self) -> None:
        """What `kafka-consumer-groups --reset-offsets --to-earliest --execute` writes: offset 0
        of every partition, no metadata of ours."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        tps = [TopicPartition(self.topic, p, 0) for p in range(self.partitions)]
        futures = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(self.group, tps)]
        )
        for future in futures.values():
            future.result(timeout=30)

    def apply_then_reset_to_earliest(
        self, applied: Simulation, unread: Simulation | None = None
    ) -> None:
        """One member applies `applied` and stops (exit 0); `unread` is published and left
        unread; then the offsets go back to the earliest, without metadata (as Kafka's tool)."""
        self.publish(applied)
        assert self.run_member_to_the_end(120, "the first part applied") == 0
        if unread is not None:
            self.publish(unread)
        self.reset_to_earliest_without_metadata()

    def run_member_to_the_end(self, timeout: float, what: str) -> int:
        """Start one more member, wait until the group committed every record (`what`, for the
        timeout's message), stop it; its exit code."""
        member = self.start_member()
        wait_until(self.all_committed, timeout, what)
        return self.stop(member)

    def set_group_config(self, **configs: str) -> None:
        """Broker-side settings of this group (consumer protocol), e.g.
        `consumer_session_timeout_ms="45000"` for `consumer.session.timeout.ms`."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        entries = [
            ConfigEntry(name.replace("_", "."), value, incremental_operation=AlterConfigOpType.SET)
            for name, value in configs.items()
        ]
        resource = ConfigResource(ResourceType.GROUP, self.group, incremental_configs=entries)
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)

    def describe(self) -> ConsumerGroupDescription:
        """The broker's view of the group: its type (consumer/classic), members, assignments."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        found: ConsumerGroupDescription = admin.describe_consumer_groups([self.group])[
            self.group
        ].result(timeout=30)
        return found

    def owned_partitions(self) -> set[int]:
        """Partitions of the topic that some member of the group owns right now."""
        return {
            tp.partition
            for member in self.describe().members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
            if tp.topic == self.topic
        }

    def committed_total(self) -> int:
        return sum(max(0, o) for o in self.committed().values())

    def all_committed(self) -> bool:
        return self.committed() == self.end_offsets()

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> list[int]:
        return [self.stop(p) for p in self.members]

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.logs.glob("member-*.log"))
        )
