"""`status` against the real broker, a real member and the sandbox on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Producer

from consumer.cli import main
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import create_topics
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
def group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[Group]:
    config = SandboxConfig(strict_orders=True, faults=FaultSettings(latency_ms=5))
    with SandboxServer(config) as sandbox:
        made = Group.create(
            kafka_bootstrap,
            unique_name("events"),
            partitions=3,
            sandbox_url=sandbox.url,
            logs=tmp_path,
        )
        yield made
        for proc in made.members:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _status(bootstrap: str, topic: str, *args: str, group: str = "status-test") -> Result:
    common = ["--bootstrap-servers", bootstrap, "--topic", topic, "--group", group]
    return CliRunner().invoke(main, ["status", *common, *args], catch_exceptions=False)


def _json(group: Group) -> dict[str, Any]:
    result = _status(group.bootstrap, group.topic, "--json", group=group.group)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _caught_up_with_member(doc: dict[str, Any]) -> bool:
    parts = doc["partitions"]
    owned = sorted(p for m in doc["members"] for p in m["partitions"])
    return (
        doc["totals"]["lag"] == 0
        and all(p["committed"] == p["end"] for p in parts)
        and owned == [p["partition"] for p in parts]
        and all(p["owner"] is not None for p in parts)
    )


def test_status_shows_lag_falling_to_zero_as_the_group_catches_up(group: Group) -> None:
    sim = simulate(60, seed=31)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(group.sandbox_url, sim, client)
    published = group.publish(sim)

    before = _json(group)
    assert before["members"] == []
    assert before["state"] in ("DEAD", "EMPTY")
    assert before["totals"]["lag"] == before["totals"]["records"] == published
    assert all(p["committed"] is None and p["owner"] is None for p in before["partitions"])
    # a group that never committed starts fresh: its members reconcile nothing (the engine's rule)
    assert before["totals"]["to_reconcile"] == 0
    assert before["dead_letter"] == {"topic": f"{group.topic}.dlq", "depth": 0}
    assert before["parking"] == {"topic": f"{group.topic}.parked", "depth": 0}

    member = group.start_member()
    seen: list[dict[str, Any]] = []

    def caught_up() -> bool:
        seen.append(_json(group))
        return _caught_up_with_member(seen[-1])

    wait_until(caught_up, 120, "status shows lag 0 and the member owning every partition")
    assert member.poll() is None, "the member should still be running"
    after = seen[-1]
    assert after["state"] == "STABLE"
    assert len(after["members"]) == 1
    assert after["members"][0]["partitions"] == [0, 1, 2]
    assert after["totals"]["to_reconcile"] == 0
    assert all(p["horizon"] is not None and p["horizon"] <= p["end"] for p in after["partitions"])
    assert group.stop(member) == 0

    table = _status(group.bootstrap, group.topic, group=group.group)
    assert table.exit_code == 0, table.output
    assert "to reconcile" in table.stdout
    assert "total" in table.stdout


def test_status_reports_dead_letter_and_parking_depth(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("events")
    create_topics(kafka_bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        producer.produce(f"{topic}.dlq", value=b"dead %d" % i, partition=i % 2)
    for i in range(2):
        producer.produce(f"{topic}.parked", value=b"parked %d" % i, partition=i % 2)
    assert producer.flush(30) == 0

    result = _status(kafka_bootstrap, topic, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dead_letter"] == {"topic": f"{topic}.dlq", "depth": 5}
    assert doc["parking"] == {"topic": f"{topic}.parked", "depth": 2}
    assert doc["totals"] == {"records": 0, "lag": 0, "to_reconcile": 0}

    elsewhere = _status(kafka_bootstrap, topic, "--json", "--dlq-topic", unique_name("nowhere"))
    assert json.loads(elsewhere.stdout)["dead_letter"]["depth"] == "missing"

    table = _status(kafka_bootstrap, topic)
    assert table.exit_code == 0, table.output
    assert "dead-letter" in table.stdout
    assert "5" in table.stdout


def test_status_of_a_missing_topic_exits_2_naming_the_setting(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("absent")
    result = _status(kafka_bootstrap, topic, "--json")
    assert result.exit_code == 2
    assert "FULFILLMENT_TOPIC" in result.stderr
    assert topic in result.stderr
    assert result.stdout == ""
