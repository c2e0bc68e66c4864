"""One filter: each kind of Kafka client gets the same passthrough keys, whichever command builds
it (the member, redrive, publish, status/replay, the side-topic readers). No broker: the clients
are replaced by recorders of the config they are given."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.config.settings import (
    CONSUMER_ONLY_KEYS,
    ENGINE_OWNED_KEYS,
    PRODUCER_ONLY_KEYS,
    ClientRole,
    passthrough_for,
)
from consumer.core.errors import InfrastructureError
from consumer.kafka import admin, reader, source, writer
from consumer.kafka.admin import GroupAdmin, topic_partition_count
from consumer.kafka.configs import (
    LibrdkafkaLogger,
    admin_config,
    client_config,
    cluster_config,
    consumer_config,
    producer_config,
    reader_config,
    settings_cluster,
)
from consumer.kafka.reader import OffsetRange, read_ranges, read_to_end
from consumer.kafka.source import KafkaSource
from consumer.kafka.writer import RecordWriter
from consumer.tools.redrive import mark_redriven, read_parked, republish
from consumer.tools.warehouse.cli import publish_command
from tests.unit.test_config import build

# one key of each kind: consumer-only, producer-only, membership, and common to all clients
PASSTHROUGH = {
    "fetch.max.bytes": "1000",
    "linger.ms": "50",
    "compression.type": "gzip",
    "group.instance.id": "m-0",
    "session.timeout.ms": "30000",
    "security.protocol": "SSL",
    "client.id": "fc",
}
ENVIRON = {"KAFKA_" + k.upper().replace(".", "_"): v for k, v in PASSTHROUGH.items()}


class _Metadata:
    @property
    def topics(self) -> dict[str, Any]:
        return {}  # no topic: nothing to read, nothing to count


class _Client:
    """Stands in for confluent-kafka's Consumer, Producer and AdminClient; records its config."""

    made: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        _Client.made.append((self.kind, dict(config)))

    kind = "client"

    def list_topics(self, *_a: Any, **_k: Any) -> _Metadata:
        return _Metadata()

    def create_topics(self, *_a: Any, **_k: Any) -> dict[str, Any]:
        raise AssertionError("not asked for")

    def assign(self, *_a: Any) -> None:
        pass

    def consume(self, *_a: Any) -> list[Any]:
        return []

    def flush(self, *_a: Any) -> int:
        return 0

    def poll(self, *_a: Any) -> int:
        return 0

    def close(self) -> None:
        pass


class _Consumer(_Client):
    kind = "consumer"


class _Producer(_Client):
    kind = "producer"


class _Admin(_Client):
    kind = "admin"


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    _Client.made = []
    for module, name, fake in (
        (source, "Consumer", _Consumer),
        (reader, "Consumer", _Consumer),
        (admin, "Consumer", _Consumer),
        (admin, "AdminClient", _Admin),
        (writer, "Producer", _Producer),
    ):
        monkeypatch.setattr(module, name, fake)
    return _Client.made


def _passthrough_in(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k in PASSTHROUGH}


def test_every_producer_takes_the_producer_keys_of_the_passthrough(
    made: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = cluster_config("b:9092", PASSTHROUGH)
    settings = build(environ=ENVIRON, group_protocol="classic", bootstrap_servers="b:9092")
    RecordWriter(producer_config(settings_cluster(settings)))  # as cli.py builds the member's
    republish(cluster, "t", [], {})
    mark_redriven(cluster, "t.parked", "t", [], through={}, landed={})
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    published = CliRunner().invoke(
        publish_command, ["--bootstrap-servers", "b:9092", "-"], input=""
    )
    assert published.exit_code == 0, published.output

    producers = [config for kind, config in made if kind == "producer"]
    assert len(producers) == 4  # the member's side writer, redrive's two, the publisher's
    for config in producers:
        assert _passthrough_in(config) == passthrough_for(PASSTHROUGH, "producer")
        assert (config["enable.idempotence"], config["acks"]) == (True, "all")
        assert config["bootstrap.servers"] == "b:9092"


def test_every_reader_takes_the_reader_keys_and_every_admin_client_the_admin_keys(
    made: list[tuple[str, dict[str, Any]]],
) -> None:
    cluster = cluster_config("b:9092", PASSTHROUGH)
    read_to_end(cluster, "t", lambda _r: None)
    with pytest.raises(InfrastructureError, match="partitions \\[0\\] unfinished"):
        read_ranges(cluster, "t", [OffsetRange(0, 0, 5)], lambda _r: None, timeout=0)
    with pytest.raises(InfrastructureError, match="does not exist"):
        read_parked(cluster, "t.parked")
    GroupAdmin(cluster, "g").close()
    assert topic_partition_count(cluster, "t") == 0

    readers = [config for kind, config in made if kind == "consumer"]
    admins = [config for kind, config in made if kind == "admin"]
    assert len(readers) == 3  # read_to_end, read_ranges, GroupAdmin's
    assert len(admins) == 3  # redrive's topic check, GroupAdmin's, topic_partition_count
    for config in readers:
        assert _passthrough_in(config) == passthrough_for(PASSTHROUGH, "reader")
        assert config["enable.auto.commit"] is False
    for config in admins:
        assert _passthrough_in(config) == passthrough_for(PASSTHROUGH, "admin")
    for config in readers + admins:  # librdkafka's lines never land raw in a tool's output
        assert isinstance(config["logger"], LibrdkafkaLogger)


def test_librdkafka_lines_reach_structlog_as_warnings_and_errors_and_info_is_dropped() -> None:
    logger = LibrdkafkaLogger()
    with capture_logs() as logs:
        logger.log(logging.INFO, "%s|BGQUEUE| Purging %d unserved events", "rdkafka#producer-2", 1)
        logger.log(logging.WARNING, "%s|FAIL| broker down", "rdkafka#consumer-1")
        logger.log(logging.ERROR, "no args")
    assert [(e["log_level"], e["message"]) for e in logs] == [
        ("warning", "rdkafka#consumer-1|FAIL| broker down"),
        ("error", "no args"),
    ]


def test_the_members_consumer_takes_the_member_keys(
    made: list[tuple[str, dict[str, Any]]],
) -> None:
    settings = build(environ=ENVIRON, group_protocol="classic")
    KafkaSource(consumer_config(settings), settings.topic)
    [(_, config)] = made
    assert _passthrough_in(config) == passthrough_for(PASSTHROUGH, "member")


def test_an_admin_client_given_a_readers_config_still_takes_only_admin_keys() -> None:
    # the member hands its side-topic helpers one config for readers and admin clients alike
    on_reader = admin_config(reader_config(cluster_config("b:9092", PASSTHROUGH), "g"))
    assert not set(on_reader) & CONSUMER_ONLY_KEYS


_KEYS = st.sampled_from(
    [
        *sorted((CONSUMER_ONLY_KEYS | PRODUCER_ONLY_KEYS) - ENGINE_OWNED_KEYS.keys()),
        *("security.protocol", "sasl.username", "client.id", "socket.timeout.ms"),
    ]
)
_KINDS: list[ClientRole] = ["member", "reader", "producer", "admin"]


@given(
    st.dictionaries(_KEYS, st.text(min_size=1, max_size=5)),
    st.sampled_from(_KINDS),
    st.dictionaries(_KEYS, st.integers()),
)
def test_a_client_config_is_its_defaults_under_the_filtered_passthrough(
    passthrough: dict[str, str], kind: ClientRole, defaults: dict[str, int]
) -> None:
    config = client_config(cluster_config("b:9092", passthrough), kind, defaults=defaults)
    taken = passthrough_for(passthrough, kind)
    assert {k: config[k] for k in taken} == taken  # the passthrough wins over a default
    assert {k: v for k, v in config.items() if k not in taken and k != "bootstrap.servers"} == {
        k: v for k, v in defaults.items() if k not in taken
    }


def test_creating_a_topic_no_broker_answers_is_our_error_naming_the_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unanswered:
        def __init__(self, _config: dict[str, Any]) -> None:
            pass

        def create_topics(self, topics: list[Any], **_k: Any) -> dict[str, Future[None]]:
            return {t.topic: Future() for t in topics}  # never resolved: no broker

    monkeypatch.setattr(admin, "AdminClient", Unanswered)
    with pytest.raises(InfrastructureError, match=r"cannot create t\.parked: no answer"):
        admin.create_topic(cluster_config("b:9092", {}), "t.parked", 3, {}, timeout=0.01)
