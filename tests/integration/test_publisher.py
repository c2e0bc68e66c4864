"""`publish` and `simulate --publish` on the real broker: keys, partitions, order, bad lines."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import click
import httpx2
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, Message, TopicPartition

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.config.registry import load_registry_settings
from consumer.config.settings import librdkafka_passthrough
from consumer.core.events import FulfillmentEvent
from consumer.kafka.schema_registry import SchemaRegistry
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.warehouse.cli import publish_command, simulate_command
from consumer.tools.warehouse.simulator import simulate, to_json_lines
from tests.registry_fake import FakeRegistry

TopicFactory = Callable[..., str]


@dataclass(frozen=True, slots=True)
class Consumed:
    partition: int
    offset: int
    key: bytes
    value: bytes
    event: FulfillmentEvent


def consume_all(
    bootstrap: str,
    topic: str,
    expected: int,
    *,
    registry_url: str | None = None,
    schema_ids: Iterable[int] = (),
    timeout: float = 30.0,
) -> list[Consumed]:
    """Every record of `topic` from the start, decoded, once `expected` arrived (bounded wait).
    With a registry, the writer schemas of `schema_ids` are fetched from it first."""
    codec = EventCodec(SchemaStore.load_default())
    if registry_url is not None:
        settings = load_registry_settings(url=registry_url)
        assert settings is not None

        async def fetched() -> EventCodec:
            async with SchemaRegistry(settings) as client:
                with_registry = EventCodec(SchemaStore.load_default(), client)
                for schema_id in schema_ids:
                    await with_registry.fetch_schema(schema_id)
                return with_registry

        codec = asyncio.run(fetched())
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Consumed] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(read(msg, codec) for msg in consumer.consume(500, timeout=0.5))
        # one more short poll: anything beyond what was expected would show up here
        records.extend(read(msg, codec) for msg in consumer.consume(500, timeout=1.0))
        return records
    finally:
        consumer.close()


def read(msg: Message, codec: EventCodec) -> Consumed:
    assert msg.error() is None, msg.error()
    partition, offset, key = msg.partition(), msg.offset(), msg.key()
    assert partition is not None
    assert offset is not None
    assert key is not None
    value = msg.value()
    assert value is not None
    return Consumed(partition, offset, key, value, codec.decode(key, value).event)


def run(
    command: click.Command, args: list[str], input_text: str | None = None, **env: str
) -> Result:
    """The command as a user runs it, with `env` added to the environment."""
    return CliRunner().invoke(command, args, input=input_text, env=env, catch_exceptions=False)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def shipment_line(order_id: str = "ord_1", quantity: int = 1, **extra: object) -> str:
    event = {
        "type": "shipment",
        "eventId": str(uuid.uuid4()),
        "orderId": order_id,
        "warehouseId": "wh_1",
        "occurredAt": 1735689600000,
        "items": [{"itemId": "itm_1", "quantity": quantity}],
        **extra,
    }
    return json.dumps(event)


@pytest.mark.kafka
def test_every_line_is_produced_keyed_by_order_id_into_one_partition_per_order_in_file_order(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=6)
    events = simulate(60, seed=21).events
    source = write_lines(tmp_path / "events.jsonl", list(to_json_lines(events)))

    result = run(
        publish_command,
        [str(source), "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--no-progress"],
    )

    assert result.exit_code == 0, result.stderr
    assert f"read {len(events)}, delivered {len(events)}, bad 0, failed 0" in result.stderr
    records = consume_all(kafka_bootstrap, topic, len(events))
    assert len(records) == len(events)
    assert all(r.key == r.event.order_id.encode("utf-8") for r in records)
    by_order: defaultdict[str, list[Consumed]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_order[record.event.order_id].append(record)
    assert len({r.partition for r in records}) > 1
    for order_id, consumed in by_order.items():
        assert len({r.partition for r in consumed}) == 1
        in_file = [e for e in events if e.order_id == order_id]
        assert [r.event for r in consumed] == in_file  # same events, same order


@pytest.mark.kafka
def test_bad_lines_are_reported_with_line_number_and_reason_and_not_produced_exit_1(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=3)
    good = [shipment_line("ord_a"), shipment_line("ord_b"), shipment_line("ord_a", quantity=2)]
    lines = [
        good[0],
        "{not json",
        good[1],
        "[1, 2]",
        shipment_line("ord_c", quantity=0),
        "",
        json.dumps({"type": "refund", "orderId": "ord_d"}),
        good[2],
    ]
    source = write_lines(tmp_path / "mixed.jsonl", lines)

    result = run(
        publish_command,
        [str(source), "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--no-progress"],
    )

    assert result.exit_code == 1, result.stderr
    reported = {
        int(line.split(":")[0].removeprefix("line ")): line
        for line in result.stderr.splitlines()
        if line.startswith("line ")
    }
    assert set(reported) == {2, 4, 5, 7}  # the blank line 6 is skipped, not bad
    assert "not JSON" in reported[2]
    assert "not a JSON object" in reported[4]
    assert "quantity" in reported[5]
    assert "read 7, delivered 3, bad 4, failed 0" in result.stderr
    records = consume_all(kafka_bootstrap, topic, 3)
    expected_ids = {json.loads(line)["eventId"] for line in good}
    assert {r.event.event_id for r in records} == expected_ids


@pytest.mark.kafka
def test_stdin_is_read_when_the_source_is_a_dash(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=2)
    lines = [shipment_line("ord_x"), shipment_line("ord_y")]

    result = run(
        publish_command,
        ["-", "--bootstrap-servers", kafka_bootstrap, "--topic", topic],
        input_text="\n".join(lines) + "\n",
    )

    assert result.exit_code == 0, result.stderr
    records = consume_all(kafka_bootstrap, topic, 2)
    assert {r.event.event_id for r in records} == {json.loads(line)["eventId"] for line in lines}
    assert {r.key for r in records} == {b"ord_x", b"ord_y"}


@pytest.mark.kafka
def test_events_the_broker_never_acknowledges_are_reported_and_exit_2(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    missing_topic = unique_name("never-created")  # the test broker does not auto-create topics
    source = write_lines(tmp_path / "events.jsonl", [shipment_line("ord_1"), "oops"])

    result = run(
        publish_command,
        [str(source), "--bootstrap-servers", kafka_bootstrap, "--topic", missing_topic],
        KAFKA_MESSAGE_TIMEOUT_MS="2000",  # passed through to librdkafka as message.timeout.ms
    )

    assert result.exit_code == 2, result.stderr
    assert "line 1: not delivered (order ord_1" in result.stderr
    assert "line 2: bad" in result.stderr
    assert "read 2, delivered 0, bad 1, failed 1" in result.stderr


def test_settings_librdkafka_refuses_stop_before_anything_is_produced_with_exit_2(
    tmp_path: Path,
) -> None:
    source = write_lines(tmp_path / "events.jsonl", [shipment_line()])

    result = run(publish_command, [str(source)], KAFKA_NO_SUCH_PROPERTY="1")

    assert result.exit_code == 2
    assert "no.such.property" in result.stderr


@pytest.mark.kafka
def test_simulate_publish_produces_the_simulated_stream_in_order(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=4)
    simulation = simulate(30, seed=4)

    result = run(
        simulate_command,
        [
            "--orders",
            "30",
            "--seed",
            "4",
            "--publish",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
        ],
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # with --publish and no --out, nothing is written
    records = sorted(
        consume_all(kafka_bootstrap, topic, len(simulation.events)),
        key=lambda r: (r.partition, r.offset),
    )
    assert sorted(r.event.event_id for r in records) == sorted(
        e.event_id for e in simulation.events
    )
    for order in simulation.orders:
        assert [r.event for r in records if r.key == order.id.encode()] == [
            e for e in simulation.events if e.order_id == order.id
        ]


def test_simulate_writes_the_publish_input_format_to_stdout_by_default() -> None:
    result = run(simulate_command, ["--orders", "5", "--seed", "9"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == list(to_json_lines(simulate(5, seed=9).events))


def test_kafka_variables_become_librdkafka_properties_except_our_own_and_the_scripts() -> None:
    environ = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
        "KAFKA_HOME": "/opt/kafka",
        "KAFKA_LINGER_MS": "",
        "FULFILLMENT_TOPIC": "t",
    }
    assert librdkafka_passthrough(environ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
    }


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("strategy", "subjects"),
    [
        ("topic", ["{topic}-value"]),
        (
            "topic-record",
            [
                "{topic}-fulfillment.events.CancellationEvent",
                "{topic}-fulfillment.events.ShipmentEvent",
            ],
        ),
        ("record", ["fulfillment.events.CancellationEvent", "fulfillment.events.ShipmentEvent"]),
    ],
)
def test_with_a_schema_registry_records_carry_confluent_framing_and_registered_ids(
    kafka_bootstrap: str, topic_factory: TopicFactory, strategy: str, subjects: list[str]
) -> None:
    topic = topic_factory(partitions=3)
    simulation = simulate(10, seed=5)
    lines = "".join(line + "\n" for line in to_json_lines(simulation.events))

    args = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    if strategy != "topic":  # the default
        args += ["--subject-strategy", strategy]

    with FakeRegistry() as registry:
        result = run(publish_command, args, input_text=lines, SCHEMA_REGISTRY_URL=registry.url)
        assert result.exit_code == 0, result.stderr
        assert sorted(registry.subjects) == [s.format(topic=topic) for s in subjects]
        assert len(registry.ids) == 2  # one id per event kind
        records = consume_all(
            kafka_bootstrap,
            topic,
            len(simulation.events),
            registry_url=registry.url,
            schema_ids=registry.ids.values(),
        )
    assert {r.value[0] for r in records} == {0}  # Confluent magic byte
    assert {int.from_bytes(r.value[1:5], "big") for r in records} == set(registry.ids.values())
    assert sorted(r.event.event_id for r in records) == sorted(
        e.event_id for e in simulation.events
    )


def test_a_schema_registry_that_cannot_be_reached_publishes_nothing_with_exit_2(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    source = write_lines(tmp_path / "events.jsonl", [shipment_line()])

    result = run(
        publish_command,
        [str(source), "--topic", unique_name("unused")],
        SCHEMA_REGISTRY_URL="http://127.0.0.1:9",  # discard port: nothing listens
    )

    assert result.exit_code == 2
    assert "nothing published" in result.stderr
    assert "schema registry" in result.stderr


@pytest.mark.kafka
def test_publish_registers_with_basic_auth_and_a_wrong_password_publishes_nothing(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    source = write_lines(tmp_path / "events.jsonl", [shipment_line()])
    args = [str(source), "--bootstrap-servers", kafka_bootstrap, "--topic", topic]

    with FakeRegistry(basic_auth=("wh", "Right-Pw-31")) as registry:
        refused = run(publish_command, args, SCHEMA_REGISTRY_URL=registry.url,
                      SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="wh:Wrong-Pw-77")  # fmt: skip
        published = run(publish_command, args, SCHEMA_REGISTRY_URL=registry.url,
                        SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="wh:Right-Pw-31")  # fmt: skip
        records = consume_all(kafka_bootstrap, topic, 1, schema_ids=registry.ids.values(),
                              registry_url=registry.url_with("wh", "Right-Pw-31"))  # fmt: skip

    assert refused.exit_code == 2
    assert "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in refused.stderr
    assert "Wrong-Pw-77" not in refused.stderr + refused.stdout
    assert published.exit_code == 0, published.stderr
    assert len(registry.ids) == 2
    assert [r.value[0] for r in records] == [0]  # Confluent framing, decoded with its schema


def test_simulate_seeds_every_order_into_the_sandbox_ledger() -> None:
    simulation = simulate(40, seed=6)

    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        result = run(
            simulate_command,
            ["--orders", "40", "--seed", "6", "--sandbox-url", sandbox.url, "--out", os.devnull],
        )
        ledger = httpx2.get(sandbox.url + "/_admin/ledger", timeout=10).json()["orders"]

    assert result.exit_code == 0, result.stderr
    assert "seeded 40 orders" in result.stderr
    assert ledger == {
        order.id: {
            "state": "accepted",
            "lines": {
                line.id: {"ordered": line.quantity, "captured": 0, "cancelled": 0}
                for line in order.lines
            },
        }
        for order in simulation.orders
    }


@pytest.mark.kafka
def test_the_progress_bar_goes_to_stderr_and_leaves_the_report_intact(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = topic_factory()
    source = write_lines(tmp_path / "events.jsonl", [shipment_line(), "nope"])

    result = run(
        publish_command,
        [str(source), "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--progress"],
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "publishing" in result.stderr
    assert "line 2: bad: not JSON" in result.stderr
    assert "read 2, delivered 1, bad 1, failed 0" in result.stderr


def test_the_help_documents_every_exit_status() -> None:
    result = run(publish_command, ["--help"])

    assert result.exit_code == 0
    for status in ("0  every line", "1  some lines were bad", "2  some valid events"):
        assert status in result.stdout
