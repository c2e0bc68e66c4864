"""Which consumer group protocol a member speaks, and the librdkafka keys each one takes. [pure]

`consumer` (KIP-848, the default): the broker assigns partitions and rebalances incrementally,
member by member; nobody waits for a dead member to rejoin, and the session timeout and
heartbeat interval are the broker's group settings (`group.consumer.*`, or per group
`consumer.session.timeout.ms` / `consumer.heartbeat.interval.ms`), not the client's.
`classic`: the client-side cooperative-sticky protocol, for brokers older than Kafka 4.0 (or
3.7+ without the new protocol enabled); session timeout and heartbeat interval are client keys.

librdkafka refuses the classic-only keys under `consumer` (it fails to create the consumer) and
silently ignores the consumer-only keys under `classic`; both are refused here, at start, with the
environment variable that set them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from consumer.core.errors import ConfigurationError

GroupProtocol = Literal["consumer", "classic"]
PROTOCOLS: tuple[GroupProtocol, ...] = get_args(GroupProtocol)
DEFAULT_PROTOCOL: GroupProtocol = "consumer"
PROTOCOL_SETTING = "KAFKA_GROUP_PROTOCOL"

# librdkafka keys that only one protocol accepts (README: "Consumer group protocol")
CLASSIC_ONLY = frozenset(
    {
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "partition.assignment.strategy",
        "group.protocol.type",
    }
)
CONSUMER_ONLY = frozenset({"group.remote.assignor"})

# what a member sets on its own, per protocol (a passthrough key of the same name overrides it)
_OURS: Mapping[GroupProtocol, Mapping[str, str | int]] = {
    "consumer": {"group.protocol": "consumer"},
    "classic": {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
        # rebalances start on a heartbeat: 1 s (librdkafka: 3 s) lets a joining member get its
        # partitions within a couple of seconds
        "heartbeat.interval.ms": 1000,
    },
}


def check_group_protocol(value: str) -> GroupProtocol:
    """`consumer` or `classic` (any case); anything else fails naming KAFKA_GROUP_PROTOCOL."""
    wanted = value.strip().lower()
    for protocol in PROTOCOLS:
        if wanted == protocol:
            return protocol
    raise ConfigurationError(
        f"must be one of {', '.join(PROTOCOLS)}, got {value!r}", setting=PROTOCOL_SETTING
    )


def env_name(key: str) -> str:
    """`session.timeout.ms` -> `KAFKA_SESSION_TIMEOUT_MS` (the passthrough's inverse)."""
    return "KAFKA_" + key.upper().replace(".", "_")


def check_group_keys(protocol: GroupProtocol, passthrough: Mapping[str, str]) -> None:
    """Refuse a passthrough key that belongs to the other protocol, naming its variable."""
    foreign, owner = (
        (CLASSIC_ONLY, "classic") if protocol == "consumer" else (CONSUMER_ONLY, "consumer")
    )
    for key in sorted(passthrough):
        if key in foreign:
            hint = (
                " (under the consumer protocol the broker's group configuration sets it)"
                if key in ("session.timeout.ms", "heartbeat.interval.ms")
                else ""
            )
            raise ConfigurationError(
                f"`{key}` applies only to the {owner} group protocol, and "
                f"{PROTOCOL_SETTING}={protocol}{hint}; unset it or set {PROTOCOL_SETTING}={owner}",
                setting=env_name(key),
            )


def group_protocol_config(protocol: GroupProtocol) -> dict[str, str | int]:
    """The librdkafka keys a member sets for `protocol`: never one the protocol refuses."""
    return dict(_OURS[protocol])
