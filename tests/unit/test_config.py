"""Settings: every bad value fails at start naming its environment variable; secrets never show."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from consumer.cli import main
from consumer.config.settings import (
    LIVE_RATE_LIMIT,
    TEST_RATE_LIMIT,
    Secret,
    Settings,
    check_dr_url,
    librdkafka_passthrough,
    load_settings,
    read_api_key,
)
from consumer.core.errors import ConfigurationError

TEST_KEY = "sk_test_Zq7xDistinctiveSecretValue42"
LIVE_KEY = "sk_live_Wv3yAnotherDistinctiveSecret9"
KAFKA_PASSWORD = "kafka-Pw-Distinctive-81xq"


def build(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """load_settings with sane values; `overrides` replace any of them."""
    options: dict[str, Any] = {
        "bootstrap_servers": "127.0.0.1:9092",
        "topic": "warehouse.fulfillment-events",
        "group_id": "fulfillment-consumer",
        "dlq_topic": None,
        "parking_topic": None,
        "dr_api_url": "https://api.digitalriver.com",
        "dr_api_key": TEST_KEY,
        "dr_api_key_file": None,
        "dr_rate_limit": None,
        "dr_api_version": "2021-12-13",
        "dr_timeout": 15.0,
        "allow_insecure_http": False,
        "schema_registry": None,
        "max_in_flight": 256,
        "max_buffered_per_partition": 5000,
        "commit_interval": 1.0,
        "drain_timeout": 20.0,
        "health_port": 8000,
        "log_format": "auto",
        "environ": {} if environ is None else environ,
    }
    options.update(overrides)
    return load_settings(**options)


def refused(**overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        build(**overrides)
    return caught.value


def case_id(value: object) -> str:
    """Readable ids: `topic='.'` rather than `overrides5`."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v!r}"[:40] for k, v in value.items()) or "nothing"
    return str(value)


def key_file(tmp_path: Path, content: str) -> str:
    path = tmp_path / "dr-api-key"
    path.write_text(content)
    return str(path)


# --- every bad setting stops the start and names its variable ------------------------------


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"bootstrap_servers": "  "}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"topic": ""}, "FULFILLMENT_TOPIC"),
        ({"topic": "orders with spaces"}, "FULFILLMENT_TOPIC"),
        ({"topic": "orders/shipped"}, "FULFILLMENT_TOPIC"),
        ({"topic": "x" * 250}, "FULFILLMENT_TOPIC"),
        ({"topic": "."}, "FULFILLMENT_TOPIC"),
        ({"topic": ".."}, "FULFILLMENT_TOPIC"),
        ({"dlq_topic": "dead letters!"}, "DLQ_TOPIC"),
        ({"parking_topic": "parked:orders"}, "PARKING_TOPIC"),
        ({"group_id": " "}, "CONSUMER_GROUP"),
        ({"dr_api_key": None}, "DR_API_KEY"),
        ({"dr_api_key": ""}, "DR_API_KEY"),
        ({"dr_api_key": "pk_test_Zq7xDistinctiveSecretValue42"}, "DR_API_KEY"),
        ({"dr_rate_limit": 0.0}, "DR_RATE_LIMIT"),
        ({"dr_rate_limit": -5.0}, "DR_RATE_LIMIT"),
        ({"dr_rate_limit": float("nan")}, "DR_RATE_LIMIT"),
        ({"dr_timeout": 0.0}, "DR_TIMEOUT_SECONDS"),
        ({"dr_max_connections": 0}, "DR_MAX_CONNECTIONS"),
        ({"max_in_flight": 0}, "MAX_IN_FLIGHT_ORDERS"),
        ({"max_buffered_per_partition": -1}, "MAX_BUFFERED_PER_PARTITION"),
        ({"commit_interval": 0.0}, "COMMIT_INTERVAL_SECONDS"),
        ({"drain_timeout": -1.0}, "DRAIN_TIMEOUT_SECONDS"),
        ({"health_port": -1}, "HEALTH_PORT"),
        ({"health_port": 65536}, "HEALTH_PORT"),
        ({"dr_api_url": "ftp://api.digitalriver.com"}, "DR_API_URL"),
        ({"dr_api_url": "api.digitalriver.com"}, "DR_API_URL"),
        ({"dr_api_url": "http://api.digitalriver.com"}, "DR_API_URL"),
        ({"dr_api_url": "http://sandbox:8080"}, "DR_API_URL"),
        ({"fencing_lease": 0.0}, "FENCING_LEASE_SECONDS"),
        ({"fencing_lease": float("nan")}, "FENCING_LEASE_SECONDS"),
        (
            {
                "fencing_lease": 6.0,
                "group_protocol": "classic",
                "environ": {"KAFKA_SESSION_TIMEOUT_MS": "6000"},
            },
            "FENCING_LEASE_SECONDS",
        ),
        (
            {"group_protocol": "classic", "environ": {"KAFKA_SESSION_TIMEOUT_MS": "6s"}},
            "KAFKA_SESSION_TIMEOUT_MS",
        ),
    ],
    ids=case_id,
)
def test_a_bad_setting_fails_at_start_naming_its_environment_variable(
    overrides: dict[str, Any], variable: str
) -> None:
    error = refused(**overrides)
    assert error.setting == variable
    assert variable in str(error)


def test_the_fencing_lease_defaults_to_two_thirds_of_the_session_timeout() -> None:
    assert build().fencing_lease == pytest.approx(30.0)
    classic = {"KAFKA_SESSION_TIMEOUT_MS": "6000"}
    assert build(classic, group_protocol="classic").fencing_lease == pytest.approx(4.0)


def test_an_explicit_fencing_lease_shorter_than_the_session_is_kept() -> None:
    classic = {"KAFKA_SESSION_TIMEOUT_MS": "6000"}
    assert build(classic, group_protocol="classic", fencing_lease=5.5).fencing_lease == 5.5


def test_a_key_and_a_key_file_together_are_refused(tmp_path: Path) -> None:
    error = refused(dr_api_key_file=key_file(tmp_path, TEST_KEY))
    assert "DR_API_KEY_FILE" in str(error)


def test_a_missing_ca_bundle_fails_at_start_naming_dr_ca_bundle(tmp_path: Path) -> None:
    error = refused(dr_ca_bundle=str(tmp_path / "absent.pem"))
    assert error.setting == "DR_CA_BUNDLE"
    assert "DR_CA_BUNDLE" in str(error)


def test_a_ca_bundle_file_is_kept_and_no_bundle_means_the_default_trust(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert build(dr_ca_bundle=str(bundle)).dr_ca_bundle == str(bundle)
    assert build(dr_ca_bundle="").dr_ca_bundle is None
    assert build().dr_ca_bundle is None


def test_a_missing_key_file_fails_naming_dr_api_key_file(tmp_path: Path) -> None:
    error = refused(dr_api_key=None, dr_api_key_file=str(tmp_path / "absent"))
    assert "DR_API_KEY_FILE" in str(error)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_fails_naming_dr_api_key_file(tmp_path: Path) -> None:
    path = Path(key_file(tmp_path, TEST_KEY))
    path.chmod(0)
    try:
        error = refused(dr_api_key=None, dr_api_key_file=str(path))
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert "DR_API_KEY_FILE" in str(error)
    assert TEST_KEY not in str(error)


def test_a_directory_as_key_file_fails_naming_dr_api_key_file(tmp_path: Path) -> None:
    error = refused(dr_api_key=None, dr_api_key_file=str(tmp_path))
    assert "DR_API_KEY_FILE" in str(error)


def test_an_empty_key_file_fails_as_a_missing_key(tmp_path: Path) -> None:
    error = refused(dr_api_key=None, dr_api_key_file=key_file(tmp_path, "\n"))
    assert error.setting == "DR_API_KEY"


# --- what good settings become ---------------------------------------------------------------


def test_the_key_file_is_read_and_stripped_of_whitespace(tmp_path: Path) -> None:
    settings = build(dr_api_key=None, dr_api_key_file=key_file(tmp_path, f"  {TEST_KEY}\n"))
    assert settings.dr_api_key == Secret(TEST_KEY)
    assert settings.dr_api_key.reveal() == TEST_KEY


def test_read_api_key_takes_the_key_given_directly() -> None:
    assert read_api_key(LIVE_KEY, None).reveal() == LIVE_KEY


def test_the_rate_limit_defaults_to_25_for_a_test_key() -> None:
    assert build(dr_api_key=TEST_KEY).dr_rate_limit == TEST_RATE_LIMIT == 25


def test_the_rate_limit_defaults_to_250_for_a_live_key() -> None:
    assert build(dr_api_key=LIVE_KEY).dr_rate_limit == LIVE_RATE_LIMIT == 250


def test_an_explicit_rate_limit_overrides_the_default() -> None:
    assert build(dr_api_key=LIVE_KEY, dr_rate_limit=40.0).dr_rate_limit == 40.0


def test_dead_letter_and_parking_topics_default_to_the_input_topic_with_a_suffix() -> None:
    settings = build(topic="wh.events")
    assert settings.dlq_topic == "wh.events.dlq"
    assert settings.parking_topic == "wh.events.parked"


def test_explicit_dead_letter_and_parking_topics_are_kept() -> None:
    settings = build(dlq_topic="dead-letters", parking_topic="parked_orders")
    assert (settings.dlq_topic, settings.parking_topic) == ("dead-letters", "parked_orders")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:8080", "http://127.0.0.2", "http://[::1]:8080"],
)
def test_plain_http_to_a_loopback_host_is_allowed(url: str) -> None:
    assert check_dr_url(url, allow_insecure_http=False) == url


@pytest.mark.parametrize(
    "url",
    ["http://api.digitalriver.com", "http://localhost.example.com", "http://10.0.0.5:8080"],
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DR_API_URL"):
        check_dr_url(url, allow_insecure_http=False)


def test_plain_http_to_another_host_is_allowed_only_when_asked_for() -> None:
    url = "http://sandbox:8080"
    assert build(dr_api_url=url, allow_insecure_http=True).dr_api_url == url


@pytest.mark.parametrize(
    "url", ["https://api.digitalriver.com", "https://10.0.0.5:8443", "https://localhost"]
)
def test_https_is_allowed_to_any_host(url: str) -> None:
    assert build(dr_api_url=url).dr_api_url == url


def test_a_trailing_slash_on_the_url_is_dropped() -> None:
    assert (
        build(dr_api_url="https://api.digitalriver.com/").dr_api_url
        == "https://api.digitalriver.com"
    )


def test_an_empty_api_version_means_the_keys_pinned_version() -> None:
    assert build(dr_api_version="").dr_api_version is None


# --- librdkafka passthrough ------------------------------------------------------------------


def test_kafka_variables_map_to_librdkafka_property_names() -> None:
    environ = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "fc",
    }
    assert librdkafka_passthrough(environ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fc",
    }


def test_kafka_bootstrap_servers_is_ours_and_not_passed_through() -> None:
    assert librdkafka_passthrough({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}) == {}


def test_other_variables_and_empty_kafka_values_are_not_passed_through() -> None:
    environ = {"PATH": "/bin", "DR_API_KEY": TEST_KEY, "KAFKA_CLIENT_ID": "", "XKAFKA_ACKS": "all"}
    assert librdkafka_passthrough(environ) == {}


def test_settings_carry_the_passthrough_of_the_environment_they_were_given() -> None:
    settings = build(environ={"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_BOOTSTRAP_SERVERS": "x:1"})
    assert dict(settings.kafka_extra) == {"security.protocol": "SSL"}


# --- secrets never show ----------------------------------------------------------------------


def secret_settings() -> Settings:
    return build(
        dr_api_key=LIVE_KEY,
        environ={"KAFKA_SASL_PASSWORD": KAFKA_PASSWORD, "KAFKA_SASL_USERNAME": "fc"},
    )


def test_the_key_never_shows_in_repr_or_str_of_the_settings() -> None:
    settings = secret_settings()
    key = settings.dr_api_key
    for text in (repr(settings), str(settings), repr(key), str(key), f"{settings}"):
        assert LIVE_KEY not in text


def test_a_kafka_password_never_shows_in_repr_or_str_of_the_settings() -> None:
    settings = secret_settings()
    assert KAFKA_PASSWORD not in repr(settings)
    assert KAFKA_PASSWORD not in str(settings)


def test_masked_settings_hide_the_key_and_secret_looking_passthrough_values() -> None:
    shown = secret_settings().masked()
    printed = json.dumps(shown, default=str)
    assert LIVE_KEY not in printed
    assert KAFKA_PASSWORD not in printed
    assert shown["dr_api_key"] == "***"
    assert shown["kafka_extra"] == {"sasl.password": "***", "sasl.username": "fc"}


def test_masked_settings_show_everything_else() -> None:
    shown = secret_settings().masked()
    assert shown["topic"] == "warehouse.fulfillment-events"
    assert shown["dr_rate_limit"] == LIVE_RATE_LIMIT
    assert set(shown) == {f for f in Settings.__dataclass_fields__}


@pytest.mark.parametrize(
    "overrides",
    [
        {"dr_api_key": "pk_" + TEST_KEY},
        {"dr_rate_limit": 0.0},
        {"health_port": 70000},
        {"topic": "bad topic"},
        {"dr_api_url": "http://api.digitalriver.com"},
    ],
    ids=case_id,
)
def test_no_configuration_error_repeats_the_key(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(**overrides)
    assert "Zq7xDistinctiveSecretValue42" not in str(caught.value)
    assert "Zq7xDistinctiveSecretValue42" not in repr(caught.value)


def test_no_key_file_error_repeats_the_key_it_read(tmp_path: Path) -> None:
    path = key_file(tmp_path, "pk_Zq7xDistinctiveSecretValue42")
    with pytest.raises(ConfigurationError) as caught:
        build(dr_api_key=None, dr_api_key_file=path)
    assert "Zq7xDistinctiveSecretValue42" not in str(caught.value)


# --- the command line ------------------------------------------------------------------------

_OUR_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "FULFILLMENT_TOPIC",
    "CONSUMER_GROUP",
    "DLQ_TOPIC",
    "PARKING_TOPIC",
    "DR_API_URL",
    "DR_API_KEY",
    "DR_API_KEY_FILE",
    "DR_RATE_LIMIT",
    "DR_API_VERSION",
    "DR_TIMEOUT_SECONDS",
    "DR_ALLOW_INSECURE_HTTP",
    "SCHEMA_REGISTRY_URL",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN",
    "SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER",
    "SCHEMA_REGISTRY_SSL_CA_LOCATION",
    "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
    "SCHEMA_REGISTRY_SSL_KEY_LOCATION",
    "SCHEMA_REGISTRY_SSL_KEY_PASSWORD",
    "MAX_IN_FLIGHT_ORDERS",
    "MAX_BUFFERED_PER_PARTITION",
    "COMMIT_INTERVAL_SECONDS",
    "DRAIN_TIMEOUT_SECONDS",
    "HEALTH_PORT",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


def invoke(args: list[str], env: dict[str, str]) -> Any:
    """Run the CLI with only `env` set among our variables (and no inherited KAFKA_*)."""
    inherited: dict[str, str | None] = dict.fromkeys(_OUR_VARIABLES)
    inherited.update({name: None for name in os.environ if name.startswith("KAFKA_")})
    return CliRunner().invoke(main, args, env={**inherited, **env})


def test_print_config_prints_the_settings_as_json_with_the_key_masked() -> None:
    result = invoke(
        ["run", "--print-config"],
        {
            "DR_API_KEY": LIVE_KEY,
            "FULFILLMENT_TOPIC": "wh.events",
            "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        },
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["dr_api_key"] == "***"
    assert printed["topic"] == "wh.events"
    assert printed["dlq_topic"] == "wh.events.dlq"
    assert printed["dr_rate_limit"] == LIVE_RATE_LIMIT
    assert printed["kafka_extra"] == {"sasl.password": "***"}
    assert LIVE_KEY not in result.output
    assert KAFKA_PASSWORD not in result.output


REGISTRY_PASSWORD = "sr-Pw-Distinctive-55zq"
REGISTRY_TOKEN = "sr-Token-Distinctive-19kd"


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        (
            {"SCHEMA_REGISTRY_URL": f"https://fc:{REGISTRY_PASSWORD}@sr.example:8081"},
            {"url": "https://fc:***@sr.example:8081", "basic_auth_user_info": None},
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "https://sr.example",
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"fc:{REGISTRY_PASSWORD}",
            },
            {"url": "https://sr.example", "basic_auth_user_info": "fc:***"},
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "https://sr.example",
                "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN": REGISTRY_TOKEN,
                "SCHEMA_REGISTRY_SSL_KEY_PASSWORD": REGISTRY_PASSWORD,
                "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": __file__,
            },
            {"bearer_auth_token": "***", "ssl_key_password": "***"},
        ),
    ],
    ids=["url-credentials", "user-info", "token-and-key-password"],
)
def test_print_config_masks_every_schema_registry_credential(
    env: dict[str, str], shown: dict[str, object]
) -> None:
    result = invoke(["run", "--print-config"], {"DR_API_KEY": LIVE_KEY, **env})

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)["schema_registry"]
    assert {k: printed[k] for k in shown} == shown
    assert REGISTRY_PASSWORD not in result.output
    assert REGISTRY_TOKEN not in result.output


def test_print_config_reads_the_key_from_dr_api_key_file(tmp_path: Path) -> None:
    env = {"DR_API_KEY_FILE": key_file(tmp_path, TEST_KEY + "\n")}
    result = invoke(["run", "--print-config"], env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dr_rate_limit"] == TEST_RATE_LIMIT
    assert TEST_KEY not in result.output


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "DR_API_KEY"),
        ({"DR_API_KEY": "not-a-key"}, "DR_API_KEY"),
        ({"DR_API_KEY": TEST_KEY, "DR_RATE_LIMIT": "0"}, "DR_RATE_LIMIT"),
        ({"DR_API_KEY": TEST_KEY, "DR_API_URL": "http://api.digitalriver.com"}, "DR_API_URL"),
        ({"DR_API_KEY": TEST_KEY, "HEALTH_PORT": "70000"}, "HEALTH_PORT"),
        ({"DR_API_KEY": TEST_KEY, "DLQ_TOPIC": "dead letters"}, "DLQ_TOPIC"),
        ({"DR_API_KEY": TEST_KEY, "FULFILLMENT_TOPIC": "a/b"}, "FULFILLMENT_TOPIC"),
        ({"DR_API_KEY": TEST_KEY, "SCHEMA_REGISTRY_URL": "registry:8081"}, "SCHEMA_REGISTRY_URL"),
        (
            {"DR_API_KEY": TEST_KEY, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "no-colon"},
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        ),
    ],
    ids=case_id,
)
def test_run_with_a_bad_setting_exits_non_zero_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    result = invoke(["run", "--print-config"], env)
    assert result.exit_code != 0
    assert variable in result.output
    assert TEST_KEY not in result.output


def test_run_refuses_a_passthrough_key_the_engine_owns_naming_the_variable() -> None:
    result = invoke(
        ["run", "--print-config"], {"DR_API_KEY": TEST_KEY, "KAFKA_ENABLE_AUTO_COMMIT": "true"}
    )
    assert result.exit_code == 2
    assert "KAFKA_ENABLE_AUTO_COMMIT" in result.output


def test_run_ignores_the_service_links_kubernetes_injects() -> None:
    links = {
        "KAFKA_SERVICE_HOST": "10.0.0.7",
        "KAFKA_SERVICE_PORT": "9092",
        "KAFKA_PORT": "tcp://10.0.0.7:9092",
        "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.7",
    }
    result = invoke(["run", "--print-config"], {"DR_API_KEY": TEST_KEY, **links})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kafka_extra"] == {}


@pytest.mark.parametrize("command", ["replay", "status", "redrive", "publish"])
def test_every_kafka_command_refuses_an_engine_owned_key_before_connecting(command: str) -> None:
    args = {"replay": ["--to-earliest"], "status": [], "redrive": ["--all"], "publish": ["-"]}[
        command
    ]
    result = invoke([command, "--bootstrap-servers", "127.0.0.1:1", *args], {"KAFKA_ACKS": "1"})
    assert result.exit_code == 2
    assert "KAFKA_ACKS" in result.output


def test_the_dedupe_changelog_defaults_to_the_input_topic_with_a_suffix_and_a_week() -> None:
    settings = build()
    assert settings.dedupe_topic == "warehouse.fulfillment-events.applied"
    assert settings.dedupe_window_hours == 168.0


@pytest.mark.parametrize("hours", [0.0, -1.0, float("nan")])
def test_a_dedupe_window_that_is_not_positive_is_refused_naming_its_variable(hours: float) -> None:
    assert refused(dedupe_window_hours=hours).setting == "DEDUPE_WINDOW_HOURS"


def test_a_bad_dedupe_topic_name_is_refused_naming_its_variable() -> None:
    assert refused(dedupe_topic="no spaces allowed").setting == "DEDUPE_TOPIC"
