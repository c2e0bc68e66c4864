"""Replay and redrive against the real broker, real members and the sandbox on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.cli import main
from consumer.core.deadletters import REDRIVEN_HEADER, parking_headers
from consumer.core.reconcile import encode_commit_metadata
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import create_topics, reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _replay(group: Group, *args: str) -> Result:
    return _cli("replay", *group.command_options(), *args)


def _stats(sandbox: SandboxServer) -> dict[str, Any]:
    found: dict[str, dict[str, Any]] = httpx2.get(f"{sandbox.url}/_admin/stats", timeout=10).json()
    return found["byRoute"]


def _member_ids(group: Group) -> list[str]:
    admin = AdminClient({"bootstrap.servers": group.bootstrap})
    found = admin.describe_consumer_groups([group.group])[group.group].result(timeout=10)
    return [member.member_id for member in found.members]


def _group_has_members(group: Group) -> bool:
    return bool(_member_ids(group))


def test_a_full_replay_from_earliest_after_success_posts_no_capture_and_reads_nothing(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(3, sandbox.url)
    sim = simulate(40, seed=21)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    group.publish(sim)
    assert group.run_member_to_the_end(90, "the first run commits every record") == 0
    posts_before = _stats(sandbox)["POST /fulfillments"]
    reads_before = _stats(sandbox).get("GET /fulfillments", {})
    ends = group.end_offsets()

    result = _replay(group, "--to-earliest", "--execute")
    assert result.exit_code == 0, result.output
    replayed = group.committed_with_metadata()
    assert replayed == {p: (0, encode_commit_metadata(ends[p])) for p in ends}

    assert group.run_member_to_the_end(90, "the replay is read to the end again") == 0
    stats = _stats(sandbox)
    assert stats["POST /fulfillments"] == posts_before, "a replayed event was posted again"
    # every replayed event is named by the applied-events changelog: settled with no request
    assert stats.get("GET /fulfillments", {}) == reads_before, "the replay read Digital River"
    result_after = reconcile(sandbox.url, sim)
    assert result_after.mismatches == []  # the ledger still equals expected_ledger
    assert result_after.duplicate_events == 0


def test_replay_refuses_while_members_are_active(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(2, sandbox.url)
    group.publish(simulate(5, seed=22))
    member = group.start_member()
    wait_until(lambda: _group_has_members(group), 60, "the member joins")
    wait_until(group.all_committed, 60, "the member commits")
    before = group.committed()

    result = _replay(group, "--to-earliest", "--execute")

    assert result.exit_code == 2
    assert "active members" in result.output
    # names the member by the id the group knows it by (KIP-848 and classic ids differ in form)
    assert any(member_id in result.output for member_id in _member_ids(group)), result.output
    assert group.committed() == before
    assert group.stop(member) == 0


def test_replay_to_offset_and_shift_by_move_only_the_named_partitions(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    group = Group.create(
        kafka_bootstrap, unique_name("events"), partitions=4, sandbox_url="", logs=tmp_path
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for p in range(4):
        for i in range(10):
            producer.produce(group.topic, value=b"%d" % i, partition=p)
    assert producer.flush(30) == 0
    setter = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group.group})
    setter.commit(
        offsets=[
            TopicPartition(group.topic, p, 10, metadata=encode_commit_metadata(10))
            for p in range(4)
        ],
        asynchronous=False,
    )
    setter.close()

    dry = _replay(group, "--to-offset", "3", "--partitions", "0,2", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert group.committed() == {0: 10, 1: 10, 2: 10, 3: 10}

    assert _replay(group, "--to-offset", "3", "--partitions", "0,2", "--execute").exit_code == 0
    assert group.committed() == {0: 3, 1: 10, 2: 3, 3: 10}
    assert _replay(group, "--shift-by", "-4", "--partitions", "1", "--execute").exit_code == 0
    assert _replay(group, "--shift-by", "-4", "--partitions", "2", "--execute").exit_code == 0
    after = group.committed_with_metadata()
    horizon = encode_commit_metadata(10)
    assert after == {0: (3, horizon), 1: (6, horizon), 2: (0, horizon), 3: (10, horizon)}
    assert _replay(group, "--to-offset", "3", "--partitions", "7", "--execute").exit_code == 2


def test_redrive_republishes_an_orders_parked_records_in_order_without_our_headers(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("events")
    create_topics(kafka_bootstrap, topic, 2)
    parked = [
        ("ord_1", b"event-1", 5),
        ("ord_2", b"other-order", 6),
        ("ord_1", b"event-2", 7),
        ("ord_1", b"event-1", 9),  # parked again after an earlier redrive: sent once
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for order, value, offset in parked:
        headers = parking_headers(
            order_id=order,
            reason="order_not_found",
            status=409,
            code="invalid_order_state",
            dr_message="nope",
            topic=topic,
            partition=1,
            offset=offset,
            timestamp_ms=None,
            parked_at_ms=1,
            original=(("trace-id", b"t-" + value), ("fc.old", b"x")),
        )
        producer.produce(f"{topic}.parked", key=order.encode(), value=value, headers=list(headers))
    assert producer.flush(30) == 0

    result = _cli(
        "redrive", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--order", "ord_1"
    )
    assert result.exit_code == 0, result.output

    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("check")})
    reader.assign([TopicPartition(topic, p, 0) for p in range(2)])
    seen: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    wait_until(lambda: _drain(reader, seen) >= 2, 30, "the redriven records arrive")
    assert not reader.consume(10, 2)  # and nothing else
    reader.close()
    # parking headers are gone; the redrive marks (reconcile before posting; how far this
    # redrive read; the event's place in its order; first of its order) are ours
    assert [(p, k, v, [h for h in hs if not h[0].startswith("fc.")]) for p, k, v, hs in seen] == [
        (1, b"ord_1", b"event-1", [("trace-id", b"t-event-1")]),
        (1, b"ord_1", b"event-2", [("trace-id", b"t-event-2")]),
    ]
    assert all(any(h[0] == REDRIVEN_HEADER for h in hs) for _, _, _, hs in seen)


def _drain(reader: Consumer, into: list[Any]) -> int:
    for msg in reader.consume(10, 0.5):
        assert msg.error() is None
        into.append((msg.partition(), msg.key(), msg.value(), list(msg.headers() or [])))
    return len(into)
