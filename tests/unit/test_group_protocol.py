"""The group protocol: a member sets only the keys its protocol accepts, and a passthrough key of
the other protocol fails at start naming its environment variable and the protocol it belongs to."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Consumer
from hypothesis import given
from hypothesis import strategies as st

from consumer.config.group_protocol import (
    CLASSIC_ONLY,
    CONSUMER_ONLY,
    PROTOCOLS,
    GroupProtocol,
    check_group_keys,
    check_group_protocol,
    env_name,
    group_protocol_config,
)
from consumer.core.errors import ConfigurationError
from consumer.kafka.configs import consumer_config, producer_config, settings_cluster
from consumer.tools.demo import _protocol_line
from tests.unit.test_config import TEST_KEY, build, invoke, refused

FOREIGN: dict[GroupProtocol, frozenset[str]] = {"consumer": CLASSIC_ONLY, "classic": CONSUMER_ONLY}
OWNER: dict[GroupProtocol, GroupProtocol] = {"consumer": "classic", "classic": "consumer"}
NEUTRAL_KEYS = ["max.poll.interval.ms", "group.instance.id", "security.protocol", "client.id"]


# --- the value ---------------------------------------------------------------------------------


def test_the_consumer_protocol_is_the_default() -> None:
    assert build().group_protocol == "consumer"


@pytest.mark.parametrize(
    ("given_value", "protocol"),
    [("consumer", "consumer"), ("classic", "classic"), (" Classic ", "classic")],
)
def test_the_protocol_setting_accepts_consumer_and_classic(
    given_value: str, protocol: GroupProtocol
) -> None:
    assert check_group_protocol(given_value) == protocol
    assert build(group_protocol=given_value).group_protocol == protocol


@pytest.mark.parametrize("value", ["", "eager", "cooperative-sticky", "consumerx"])
def test_any_other_protocol_fails_naming_kafka_group_protocol(value: str) -> None:
    error = refused(group_protocol=value)
    assert error.setting == "KAFKA_GROUP_PROTOCOL"
    assert "consumer, classic" in error.reason


def test_kafka_group_protocol_is_our_setting_not_a_passthrough_key() -> None:
    settings = build(environ={"KAFKA_GROUP_PROTOCOL": "classic"})
    assert "group.protocol" not in settings.kafka_extra


# --- which keys a member sets ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_member_sets_its_protocol_and_no_key_that_protocol_refuses(
    protocol: GroupProtocol,
) -> None:
    config = consumer_config(build(group_protocol=protocol))
    assert config["group.protocol"] == protocol
    assert not set(config) & FOREIGN[protocol]


def test_the_classic_protocol_keeps_cooperative_sticky_and_a_one_second_heartbeat() -> None:
    config = group_protocol_config("classic")
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["heartbeat.interval.ms"] == 1000


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_librdkafka_accepts_the_configuration_built_for_each_protocol(
    protocol: GroupProtocol,
) -> None:
    # creating a consumer validates the configuration; it connects to nothing until polled
    config = consumer_config(build(bootstrap_servers="127.0.0.1:1", group_protocol=protocol))
    Consumer(config).close()


def test_librdkafka_really_refuses_the_classic_keys_under_the_consumer_protocol() -> None:
    # the premise of the split: if librdkafka ever accepts them, CLASSIC_ONLY is worth revisiting
    for key, value in {
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "500",
        "partition.assignment.strategy": "range",
        "group.protocol.type": "consumer",
    }.items():
        config = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "group.protocol": "consumer"}
        with pytest.raises(Exception, match=key):
            Consumer({**config, key: value})


# --- refusing the other protocol's keys --------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "variable", "owner"),
    [
        ("consumer", "KAFKA_SESSION_TIMEOUT_MS", "classic"),
        ("consumer", "KAFKA_HEARTBEAT_INTERVAL_MS", "classic"),
        ("consumer", "KAFKA_GROUP_PROTOCOL_TYPE", "classic"),
        ("classic", "KAFKA_GROUP_REMOTE_ASSIGNOR", "consumer"),
    ],
)
def test_a_passthrough_key_of_the_other_protocol_fails_naming_its_variable_and_protocol(
    protocol: GroupProtocol, variable: str, owner: str
) -> None:
    error = refused(group_protocol=protocol, environ={variable: "1"})
    assert error.setting == variable
    assert f"only to the {owner} group protocol" in error.reason
    assert f"KAFKA_GROUP_PROTOCOL={owner}" in error.reason


@pytest.mark.parametrize(
    ("protocol", "variable"),
    [
        ("classic", "KAFKA_SESSION_TIMEOUT_MS"),
        ("classic", "KAFKA_HEARTBEAT_INTERVAL_MS"),
        ("consumer", "KAFKA_GROUP_REMOTE_ASSIGNOR"),
        ("consumer", "KAFKA_GROUP_INSTANCE_ID"),
        ("classic", "KAFKA_GROUP_INSTANCE_ID"),
        ("consumer", "KAFKA_MAX_POLL_INTERVAL_MS"),
    ],
)
def test_a_passthrough_key_of_the_chosen_protocol_reaches_librdkafka(
    protocol: GroupProtocol, variable: str
) -> None:
    settings = build(group_protocol=protocol, environ={variable: "7000"})
    key = variable[len("KAFKA_") :].lower().replace("_", ".")
    assert consumer_config(settings)[key] == "7000"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_group_keys_never_reach_the_dead_letter_producer(protocol: GroupProtocol) -> None:
    own_key = "KAFKA_SESSION_TIMEOUT_MS" if protocol == "classic" else "KAFKA_GROUP_REMOTE_ASSIGNOR"
    environ = {"KAFKA_GROUP_INSTANCE_ID": "pod-0", "KAFKA_SECURITY_PROTOCOL": "SSL", own_key: "1"}
    config = producer_config(settings_cluster(build(group_protocol=protocol, environ=environ)))
    assert config["security.protocol"] == "SSL"
    assert not [k for k in config if k.startswith(("group.", "session.", "partition.assignment"))]


def test_the_variable_name_is_the_passthrough_inverse() -> None:
    assert env_name("session.timeout.ms") == "KAFKA_SESSION_TIMEOUT_MS"
    assert env_name("group.remote.assignor") == "KAFKA_GROUP_REMOTE_ASSIGNOR"


@given(
    protocol=st.sampled_from(PROTOCOLS),
    keys=st.sets(st.sampled_from(sorted(CLASSIC_ONLY | CONSUMER_ONLY) + NEUTRAL_KEYS)),
)
def test_keys_are_refused_exactly_when_one_belongs_to_the_other_protocol(
    protocol: GroupProtocol, keys: set[str]
) -> None:
    passthrough = dict.fromkeys(keys, "1")
    foreign = keys & FOREIGN[protocol]
    if not foreign:
        check_group_keys(protocol, passthrough)
        return
    with pytest.raises(ConfigurationError) as caught:
        check_group_keys(protocol, passthrough)
    assert caught.value.setting in {env_name(k) for k in foreign}
    assert f"only to the {OWNER[protocol]} group protocol" in caught.value.reason


# --- at the command line -----------------------------------------------------------------------


def test_run_fails_at_start_on_a_classic_key_under_the_default_protocol() -> None:
    result = invoke(
        ["run", "--print-config"], {"DR_API_KEY": TEST_KEY, "KAFKA_SESSION_TIMEOUT_MS": "6000"}
    )
    assert result.exit_code == 2
    assert "KAFKA_SESSION_TIMEOUT_MS" in result.output
    assert "classic group protocol" in result.output


def test_run_takes_the_protocol_from_kafka_group_protocol() -> None:
    result = invoke(
        ["run", "--print-config"],
        {
            "DR_API_KEY": TEST_KEY,
            "KAFKA_GROUP_PROTOCOL": "classic",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["group_protocol"] == "classic"
    assert printed["kafka_extra"] == {"session.timeout.ms": "6000"}


# --- the demo says which protocol runs and how to choose the other ------------------------------


@pytest.mark.parametrize(("protocol", "other"), [("consumer", "classic"), ("classic", "consumer")])
def test_the_demo_names_the_running_protocol_and_how_to_choose_the_other(
    protocol: str, other: str
) -> None:
    line = _protocol_line(protocol)
    assert line.startswith(f"[bold]group protocol[/] {protocol} ")
    assert f"--group-protocol {other}" in line
    assert f"KAFKA_GROUP_PROTOCOL={other}" in line
