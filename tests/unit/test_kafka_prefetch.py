"""librdkafka's prefetch is bounded: it adds to what a member holds per buffered record (#13)."""

from __future__ import annotations

from consumer.kafka.configs import consumer_config, producer_config, settings_cluster
from tests.unit.test_config import build


def test_the_consumer_prefetches_far_less_than_librdkafkas_defaults() -> None:
    config = consumer_config(build())
    assert config["queued.max.messages.kbytes"] == 8192  # librdkafka: 65536
    assert config["queued.min.messages"] == 5000  # librdkafka: 100000
    assert config["fetch.max.bytes"] == 4 * 1024 * 1024  # librdkafka: 52428800


def test_the_prefetch_bound_can_be_set_through_the_kafka_passthrough() -> None:
    settings = build(environ={"KAFKA_QUEUED_MAX_MESSAGES_KBYTES": "65536"})
    assert consumer_config(settings)["queued.max.messages.kbytes"] == "65536"
    assert "queued.max.messages.kbytes" not in producer_config(settings_cluster(settings)), (
        "a consumer property"
    )
