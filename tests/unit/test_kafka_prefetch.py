"""librdkafka's prefetch is bounded: it adds to what a member holds per buffered record (#13)."""

from __future__ import annotations

from consumer.kafka_io import QUEUED_MAX_KBYTES, consumer_config, producer_config
from tests.unit.test_config import build


def test_the_consumer_prefetches_at_most_16_mib_not_librdkafkas_64() -> None:
    config = consumer_config(build())
    assert config["queued.max.messages.kbytes"] == QUEUED_MAX_KBYTES == 16 * 1024


def test_the_prefetch_bound_can_be_set_through_the_kafka_passthrough() -> None:
    settings = build(environ={"KAFKA_QUEUED_MAX_MESSAGES_KBYTES": "4096"})
    assert consumer_config(settings)["queued.max.messages.kbytes"] == "4096"
    assert "queued.max.messages.kbytes" not in producer_config(settings), "a consumer property"
