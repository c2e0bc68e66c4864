"""A real consumer group on the real broker: members are `fulfillment-consumer run` processes.

Shared by the consumer-group integration tests. Everything waits with bounded polling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
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
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            for attempt in range(20):
                try:
                    return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
                except KafkaException:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
            raise AssertionError("unreachable")
        finally:
            consumer.close()

    def end_offsets(self) -> dict[int, int]:
        """End offset per partition; rides out a loaded broker (unknown partition at first)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            for attempt in range(20):
                try:
                    return {
                        p: consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=10
                        )[1]
                        for p in range(self.partitions)
                    }
                except KafkaException:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
            raise AssertionError("unreachable")
        finally:
            consumer.close()

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
