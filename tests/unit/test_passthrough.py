"""The KAFKA_* passthrough: engine-owned keys refused, service links ignored, one filter per
kind of client. [pure]"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.config.settings import (
    CONSUMER_ONLY_KEYS,
    ENGINE_OWNED_KEYS,
    MEMBERSHIP_KEYS,
    PRODUCER_ONLY_KEYS,
    librdkafka_passthrough,
    passthrough_for,
)
from consumer.core.errors import ConfigurationError


def variable(key: str) -> str:
    return "KAFKA_" + key.upper().replace(".", "_")


@pytest.mark.parametrize("key", sorted(ENGINE_OWNED_KEYS))
def test_a_key_the_engine_owns_is_refused_naming_its_variable(key: str) -> None:
    name = variable(key)
    with pytest.raises(ConfigurationError) as caught:
        librdkafka_passthrough({name: "x", "KAFKA_CLIENT_ID": "fc"})
    assert caught.value.setting == name
    assert str(caught.value).startswith(f"{name}: ")
    assert key in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "KAFKA_ENABLE_AUTO_COMMIT",
        "KAFKA_ENABLE_AUTO_OFFSET_STORE",
        "KAFKA_GROUP_ID",
        "KAFKA_PARTITION_ASSIGNMENT_STRATEGY",
        "KAFKA_ENABLE_IDEMPOTENCE",
        "KAFKA_ACKS",
        "KAFKA_METADATA_BROKER_LIST",
    ],
)
def test_the_issues_engine_owned_variables_are_all_refused(name: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        librdkafka_passthrough({name: "1"})
    assert caught.value.setting == name


def test_a_refused_bootstrap_alias_points_at_kafka_bootstrap_servers() -> None:
    with pytest.raises(ConfigurationError) as caught:
        librdkafka_passthrough({"KAFKA_METADATA_BROKER_LIST": "b:9092"})
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        # a Service named kafka
        "KAFKA_SERVICE_HOST",
        "KAFKA_SERVICE_PORT",
        "KAFKA_SERVICE_PORT_BROKER",
        "KAFKA_PORT",
        "KAFKA_PORT_9092_TCP",
        "KAFKA_PORT_9092_TCP_PROTO",
        "KAFKA_PORT_9092_TCP_PORT",
        "KAFKA_PORT_9092_TCP_ADDR",
        # a Service named kafka-broker-0
        "KAFKA_BROKER_0_SERVICE_HOST",
        "KAFKA_BROKER_0_SERVICE_PORT",
        "KAFKA_BROKER_0_SERVICE_PORT_PLAINTEXT",
        "KAFKA_BROKER_0_PORT",
        "KAFKA_BROKER_0_PORT_9093_UDP_ADDR",
    ],
)
def test_kubernetes_service_link_variables_are_ignored(name: str) -> None:
    value = "tcp://10.0.0.7:9092" if name.endswith(("PORT", "TCP")) else "10.0.0.7"
    assert librdkafka_passthrough({name: value, "KAFKA_CLIENT_ID": "fc"}) == {"client.id": "fc"}


def test_librdkafka_settings_that_look_like_service_links_still_pass() -> None:
    environ = {"KAFKA_SASL_KERBEROS_SERVICE_NAME": "kafka", "KAFKA_SSL_CA_LOCATION": "/ca.pem"}
    assert librdkafka_passthrough(environ) == {
        "sasl.kerberos.service.name": "kafka",
        "ssl.ca.location": "/ca.pem",
    }


def test_a_member_keeps_its_membership_keys_and_drops_producer_only_ones() -> None:
    extra = {"session.timeout.ms": "30000", "group.instance.id": "m-0", "linger.ms": "50"}
    assert passthrough_for(extra, "member") == {
        "session.timeout.ms": "30000",
        "group.instance.id": "m-0",
    }


def test_a_reader_never_carries_a_members_identity() -> None:
    extra = {"group.instance.id": "m-0", "fetch.max.bytes": "1000", "security.protocol": "SSL"}
    assert passthrough_for(extra, "reader") == {
        "fetch.max.bytes": "1000",
        "security.protocol": "SSL",
    }


def test_a_producer_drops_consumer_only_keys() -> None:
    extra = {"session.timeout.ms": "30000", "auto.offset.reset": "latest", "linger.ms": "50"}
    assert passthrough_for(extra, "producer") == {"linger.ms": "50"}


_KEYS = st.sampled_from(
    [
        *sorted(CONSUMER_ONLY_KEYS | PRODUCER_ONLY_KEYS),
        *("security.protocol", "sasl.username", "client.id", "socket.timeout.ms"),
    ]
)


@given(st.dictionaries(_KEYS, st.text(min_size=1, max_size=5)))
def test_each_client_gets_exactly_the_keys_of_its_kind(extra: dict[str, str]) -> None:
    producer = passthrough_for(extra, "producer")
    member = passthrough_for(extra, "member")
    reader = passthrough_for(extra, "reader")
    assert not set(producer) & CONSUMER_ONLY_KEYS
    assert not set(member) & PRODUCER_ONLY_KEYS
    assert not set(reader) & (PRODUCER_ONLY_KEYS | MEMBERSHIP_KEYS)
    # nothing else is dropped, and values are untouched
    common = {k: v for k, v in extra.items() if k not in CONSUMER_ONLY_KEYS | PRODUCER_ONLY_KEYS}
    for chosen in (producer, member, reader):
        assert common.items() <= chosen.items() <= extra.items()
    assert reader.items() <= member.items()
