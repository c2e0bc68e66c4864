"""Settings: flags + environment -> one frozen, validated `Settings`. [pure]

Read once at the entry point (cli.py) and handed down. Every setting has an environment name
(PRODUCT.md's table is a contract); a bad value fails at start with a `ConfigurationError` that
names the environment variable. The key is a `Secret`: it never shows in repr, logs or errors.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from consumer.errors import ConfigurationError
from consumer.group_protocol import (
    DEFAULT_PROTOCOL,
    GroupProtocol,
    check_group_keys,
    check_group_protocol,
)

LogFormat = Literal["auto", "json", "console"]

# KAFKA_* variables that are not librdkafka properties: ours, and the Kafka distribution's own
# script variables (container images often set them).
_NOT_PASSTHROUGH = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",  # has its own flag
        "KAFKA_GROUP_PROTOCOL",  # has its own flag; the member sets `group.protocol` from it
        "KAFKA_HOME",
        "KAFKA_OPTS",
        "KAFKA_HEAP_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_DEBUG",
    }
)
LIVE_RATE_LIMIT = 250.0
TEST_RATE_LIMIT = 25.0


class Secret:
    """A value that prints as `***`. Call `reveal()` where it is really needed (the auth header)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `run` needs; built by `load_settings`."""

    bootstrap_servers: str
    topic: str
    group_id: str
    dlq_topic: str
    parking_topic: str
    dr_api_url: str
    dr_api_key: Secret = field(repr=False)
    dr_rate_limit: float
    dr_api_version: str | None
    dr_timeout: float
    schema_registry_url: str | None
    max_in_flight: int
    max_buffered_per_partition: int
    commit_interval: float
    drain_timeout: float
    health_port: int
    log_format: LogFormat
    dlq_max_ratio: float
    kafka_extra: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # may hold sasl.password
    group_protocol: GroupProtocol = DEFAULT_PROTOCOL

    def masked(self) -> dict[str, object]:
        """Every setting, printable: secrets and passthrough values that look secret are masked."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "***"
            elif f.name == "kafka_extra":
                value = {k: ("***" if _looks_secret(k) else v) for k, v in value.items()}
            shown[f.name] = value
        return shown


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("password", "secret", "key", "token", "jaas"))


def librdkafka_passthrough(environ: Mapping[str, str]) -> dict[str, str]:
    """`KAFKA_SECURITY_PROTOCOL=SSL` -> `{"security.protocol": "SSL"}`; ours are excluded."""
    return {
        name[len("KAFKA_") :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith("KAFKA_") and name not in _NOT_PASSTHROUGH and value != ""
    }


def read_api_key(key: str | None, key_file: str | None) -> Secret:
    """DR_API_KEY, or the contents of DR_API_KEY_FILE (a mounted Kubernetes secret)."""
    if key and key_file:
        raise ConfigurationError(
            "give DR_API_KEY or DR_API_KEY_FILE, not both", setting="DR_API_KEY_FILE"
        )
    if key_file:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the key file ({exc.strerror})", setting="DR_API_KEY_FILE"
            ) from None
    if not key:
        raise ConfigurationError("a Digital River secret key is required", setting="DR_API_KEY")
    if not key.startswith("sk_"):
        raise ConfigurationError(
            "a Digital River secret key starts with sk_ (sk_test_ in test mode)",
            setting="DR_API_KEY",
        )
    return Secret(key)


def default_rate_limit(key: Secret) -> float:
    return TEST_RATE_LIMIT if key.reveal().startswith("sk_test_") else LIVE_RATE_LIMIT


def check_dr_url(url: str, *, allow_insecure_http: bool) -> str:
    """https always; plain http only to loopback (the sandbox) or when explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"not an http(s) URL: {url!r}", setting="DR_API_URL")
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(parts.hostname)):
        raise ConfigurationError(
            "plain http is refused except to a loopback host (the sandbox); use https",
            setting="DR_API_URL",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_positive(value: float, setting: str) -> None:
    if not value > 0:  # also refuses NaN, which compares false to everything
        raise ConfigurationError(f"must be greater than 0, got {value}", setting=setting)


def check_port(value: int, setting: str) -> None:
    if not 0 <= value <= 65535:
        raise ConfigurationError(f"not a TCP port: {value}", setting=setting)


def check_topic(value: str, setting: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or value in (".", "..") or len(value) > 249 or not set(value) <= allowed:
        raise ConfigurationError(f"not a valid Kafka topic name: {value!r}", setting=setting)
    return value


def load_settings(
    *,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    dlq_topic: str | None,
    parking_topic: str | None,
    dr_api_url: str,
    dr_api_key: str | None,
    dr_api_key_file: str | None,
    dr_rate_limit: float | None,
    dr_api_version: str | None,
    dr_timeout: float,
    allow_insecure_http: bool,
    schema_registry_url: str | None,
    max_in_flight: int,
    max_buffered_per_partition: int,
    commit_interval: float,
    drain_timeout: float,
    health_port: int,
    log_format: LogFormat,
    environ: Mapping[str, str],
    dlq_max_ratio: float = 0.5,
    group_protocol: str = DEFAULT_PROTOCOL,
) -> Settings:
    """Validate everything once; raise ConfigurationError naming the first bad setting."""
    if not bootstrap_servers.strip():
        raise ConfigurationError(
            "at least one broker is required", setting="KAFKA_BOOTSTRAP_SERVERS"
        )
    check_topic(topic, "FULFILLMENT_TOPIC")
    if not group_id.strip():
        raise ConfigurationError("a consumer group id is required", setting="CONSUMER_GROUP")
    key = read_api_key(dr_api_key, dr_api_key_file)
    rate = default_rate_limit(key) if dr_rate_limit is None else dr_rate_limit
    require_positive(rate, "DR_RATE_LIMIT")
    require_positive(dr_timeout, "DR_TIMEOUT_SECONDS")
    require_positive(max_in_flight, "MAX_IN_FLIGHT_ORDERS")
    require_positive(max_buffered_per_partition, "MAX_BUFFERED_PER_PARTITION")
    require_positive(commit_interval, "COMMIT_INTERVAL_SECONDS")
    require_positive(drain_timeout, "DRAIN_TIMEOUT_SECONDS")
    check_port(health_port, "HEALTH_PORT")
    if not 0 < dlq_max_ratio <= 1:
        raise ConfigurationError(f"must be in (0, 1], got {dlq_max_ratio}", setting="DLQ_MAX_RATIO")
    if schema_registry_url is not None and urlsplit(schema_registry_url).scheme not in (
        "http",
        "https",
    ):
        raise ConfigurationError(
            f"not an http(s) URL: {schema_registry_url!r}", setting="SCHEMA_REGISTRY_URL"
        )
    protocol = check_group_protocol(group_protocol)
    kafka_extra = librdkafka_passthrough(environ)
    check_group_keys(protocol, kafka_extra)
    return Settings(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        group_id=group_id,
        dlq_topic=check_topic(dlq_topic or f"{topic}.dlq", "DLQ_TOPIC"),
        parking_topic=check_topic(parking_topic or f"{topic}.parked", "PARKING_TOPIC"),
        dr_api_url=check_dr_url(dr_api_url, allow_insecure_http=allow_insecure_http),
        dr_api_key=key,
        dr_rate_limit=rate,
        dr_api_version=dr_api_version or None,
        dr_timeout=dr_timeout,
        schema_registry_url=schema_registry_url or None,
        max_in_flight=max_in_flight,
        max_buffered_per_partition=max_buffered_per_partition,
        commit_interval=commit_interval,
        drain_timeout=drain_timeout,
        health_port=health_port,
        log_format=log_format,
        dlq_max_ratio=dlq_max_ratio,
        kafka_extra=kafka_extra,
        group_protocol=protocol,
    )
