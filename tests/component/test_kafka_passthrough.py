"""Each client built from the passthrough takes only keys of its kind: librdkafka itself (no
broker needed) warns about no property it would ignore."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from consumer.config.settings import (
    CONSUMER_ONLY_KEYS,
    ENGINE_OWNED_KEYS,
    PRODUCER_ONLY_KEYS,
    ClientRole,
    passthrough_for,
)

_VALUES = {
    "group.instance.id": "m-0",
    "group.protocol": "classic",
    "group.protocol.type": "consumer",
    "group.remote.assignor": "uniform",
    "partition.assignment.strategy": "cooperative-sticky",
    "offset.store.method": "broker",
    "offset.store.path": ".",
    "isolation.level": "read_committed",
    "auto.offset.reset": "earliest",
    "compression.codec": "gzip",
    "compression.type": "gzip",
    "partitioner": "murmur2_random",
    "queuing.strategy": "fifo",
    "transactional.id": "t-0",
    "compression.level": "1",
    "linger.ms": "5",
    "queue.buffering.max.ms": "5",
    "fetch.max.bytes": "52428800",
    "fetch.message.max.bytes": "1048576",
    "max.partition.fetch.bytes": "1048576",
    "queued.max.messages.kbytes": "65536",
}
_BOOLEANS = {
    "auto.commit.enable",
    "enable.partition.eof",
    "check.crcs",
    "enable.gapless.guarantee",
    "produce.offset.report",
}


def _value(key: str) -> str:
    if key in _VALUES:
        return _VALUES[key]
    if key in _BOOLEANS:
        return "false"
    return "60000" if key.endswith(".ms") else "100"


# every one-kind key an operator may pass (the engine's own are refused before this point)
EXTRA = {
    k: _value(k)
    for k in CONSUMER_ONLY_KEYS | PRODUCER_ONLY_KEYS
    # transactional.id would make the producer transactional; confluent-kafka wants a bool (no
    # environment string) for delivery.report.only.error
    if k not in {*ENGINE_OWNED_KEYS, "transactional.id", "delivery.report.only.error"}
}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _ignored_properties(role: ClientRole) -> list[str]:
    """librdkafka's "... property and will be ignored" lines for a client of `role`."""
    handler = _Lines()
    logger = logging.getLogger(f"test.passthrough.{role}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    config: dict[str, Any] = {**passthrough_for(EXTRA, role), "logger": logger}
    if role == "producer":
        Producer(config).flush(0)
    elif role == "admin":
        AdminClient(config).poll(0)
    else:
        Consumer({**config, "group.id": "g"}).close()
    return [line for line in handler.lines if "ignored" in line]


def test_the_filter_under_test_has_something_to_filter() -> None:
    handler = _Lines()
    logger = logging.getLogger("test.passthrough.unfiltered")
    logger.addHandler(handler)
    logger.propagate = False
    Producer({**EXTRA, "logger": logger}).flush(0)
    assert any("consumer property" in line for line in handler.lines)


@pytest.mark.parametrize("role", ["member", "reader", "producer", "admin"])
def test_librdkafka_ignores_no_passthrough_key_of_a_filtered_client(role: ClientRole) -> None:
    assert _ignored_properties(role) == []
