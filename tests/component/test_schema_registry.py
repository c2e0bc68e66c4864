"""Our registry adapter (Confluent's async client inside) against a fake registry on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.config.registry import RegistrySettings, load_registry_settings
from consumer.core.errors import ConfigurationError, InfrastructureError, UnknownSchema
from consumer.core.events import CancellationEvent, LineQuantity
from consumer.kafka.schema_registry import SchemaRegistry
from tests.registry_fake import FakeRegistry
from tests.tls_certs import make_tls_files

T = TypeVar("T")
STORE = SchemaStore.load_default()
SHIPMENT_SCHEMA = dict(STORE.latest("shipment").definition)
CANCELLATION_SCHEMA = dict(STORE.latest("cancellation").definition)


def settings(url: str, **auth: str) -> RegistrySettings:
    loaded = load_registry_settings(url=url, **auth)
    assert loaded is not None
    return loaded


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def get(registry_settings: RegistrySettings, *ids: int) -> list[dict[str, Any]]:
    async with SchemaRegistry(registry_settings) as client:
        return [await client.get_schema(i) for i in ids]


async def register(registry_settings: RegistrySettings, subject: str, *schemas: Any) -> list[int]:
    async with SchemaRegistry(registry_settings) as client:
        return [await client.register(subject, s) for s in schemas]


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake


def test_a_registered_schema_is_fetched_back_by_its_id(registry: FakeRegistry) -> None:
    (schema_id,) = run(register(settings(registry.url), "events-value", SHIPMENT_SCHEMA))

    assert run(get(settings(registry.url), schema_id)) == [SHIPMENT_SCHEMA]


def test_registering_the_same_schema_again_returns_the_same_id(registry: FakeRegistry) -> None:
    first, other, again = run(
        register(
            settings(registry.url),
            "events-value",
            SHIPMENT_SCHEMA,
            CANCELLATION_SCHEMA,
            SHIPMENT_SCHEMA,
        )
    )

    assert first == again != other


def test_each_schema_id_is_fetched_once_per_client(registry: FakeRegistry) -> None:
    schema_id = registry.add(json.dumps(SHIPMENT_SCHEMA))

    run(get(settings(registry.url), *[schema_id] * 5))

    assert registry.requests[f"GET /schemas/ids/{schema_id}"] == 1


def test_an_id_the_registry_does_not_have_is_an_unknown_schema_and_is_asked_again(
    registry: FakeRegistry,
) -> None:
    async def scenario() -> dict[str, Any]:
        async with SchemaRegistry(settings(registry.url)) as client:
            with pytest.raises(UnknownSchema, match="schema id 1 is not in the schema registry"):
                await client.get_schema(1)
            registry.add(json.dumps(SHIPMENT_SCHEMA))  # id 1 appears
            return await client.get_schema(1)

    assert run(scenario()) == SHIPMENT_SCHEMA
    assert registry.requests["GET /schemas/ids/1"] == 2


def test_a_schema_that_is_not_avro_is_an_unknown_schema(registry: FakeRegistry) -> None:
    schema_id = registry.add(json.dumps({"type": "object"}), schema_type="JSON")

    with pytest.raises(UnknownSchema, match="is a JSON schema, not Avro"):
        run(get(settings(registry.url), schema_id))


def test_an_avro_schema_that_is_not_a_record_object_is_an_unknown_schema(
    registry: FakeRegistry,
) -> None:
    schema_id = registry.add(json.dumps(["null", "string"]))

    with pytest.raises(UnknownSchema, match="not an Avro record schema"):
        run(get(settings(registry.url), schema_id))


@pytest.mark.parametrize("status", [500, 503, 429, 400])
def test_registry_failures_are_infrastructure_errors(registry: FakeRegistry, status: int) -> None:
    registry.fail_with = status

    with pytest.raises(InfrastructureError, match=f"answered {status}: injected failure"):
        run(get(settings(registry.url), 1))
    with pytest.raises(InfrastructureError):
        run(register(settings(registry.url), "events-value", SHIPMENT_SCHEMA))


def test_an_unreachable_registry_is_an_infrastructure_error_that_hides_credentials(
    registry: FakeRegistry,
) -> None:
    registry.down = True

    with pytest.raises(InfrastructureError) as caught:
        run(get(settings(registry.url_with("fc", "s3cret")), 1))

    assert "s3cret" not in str(caught.value)


def test_nothing_listening_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match="failed: ConnectError"):
        run(get(settings("http://127.0.0.1:9"), 1))  # discard port: nothing listens


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        FakeRegistry(basic_auth=("fc", "s3cret")) as registry,
        caplog.at_level(logging.DEBUG),  # the HTTP library logs every request's URL
    ):
        ids = run(register(settings(registry.url_with("fc", "s3cret")), "v", SHIPMENT_SCHEMA))

    assert ids == [1]
    assert registry.headers[-1]["Authorization"] == "Basic ZmM6czNjcmV0"  # base64("fc:s3cret")
    assert any("/subjects/v/versions" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if "s3cret" in r.getMessage()]


def test_basic_auth_user_info_is_sent_as_basic_auth() -> None:
    with FakeRegistry(basic_auth=("fc", "s3:cret")) as registry:
        schema_id = registry.add(json.dumps(SHIPMENT_SCHEMA))
        fetched = run(get(settings(registry.url, basic_auth_user_info="fc:s3:cret"), schema_id))

    assert fetched == [SHIPMENT_SCHEMA]


def test_a_bearer_token_is_sent_as_the_authorization_header() -> None:
    with FakeRegistry(bearer_token="tok-123") as registry:
        schema_id = registry.add(json.dumps(SHIPMENT_SCHEMA))
        fetched = run(
            get(
                settings(
                    registry.url,
                    bearer_auth_token="tok-123",
                    bearer_auth_logical_cluster="lsrc-1",
                ),
                schema_id,
            )
        )

    assert fetched == [SHIPMENT_SCHEMA]
    assert registry.headers[-1]["target-sr-cluster"] == "lsrc-1"


@pytest.mark.parametrize(
    ("auth", "setting"),
    [
        ({}, "SCHEMA_REGISTRY_URL"),
        ({"basic_auth_user_info": "fc:wrong"}, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
        ({"bearer_auth_token": "wrong"}, "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN"),
    ],
)
def test_refused_credentials_are_a_configuration_error_naming_the_variable(
    auth: dict[str, str], setting: str
) -> None:
    with (
        FakeRegistry(basic_auth=("fc", "s3cret")) as registry,
        pytest.raises(ConfigurationError, match="refused our credentials") as caught,
    ):
        run(get(settings(registry.url, **auth), 1))

    assert caught.value.setting == setting
    assert "wrong" not in str(caught.value)


@pytest.mark.parametrize("status", [409, 422])
def test_a_schema_the_registry_refuses_is_a_configuration_error(
    registry: FakeRegistry, status: int
) -> None:
    registry.fail_with = status

    with pytest.raises(ConfigurationError, match=f"refused the schema .* \\({status}\\)"):
        run(register(settings(registry.url), "events-value", SHIPMENT_SCHEMA))


def test_subjects_are_escaped_in_the_path(registry: FakeRegistry) -> None:
    run(register(settings(registry.url), "team/a events-value", SHIPMENT_SCHEMA))

    assert registry.requests["POST /subjects/team%2Fa%20events-value/versions"] == 1


def test_a_client_certificate_that_cannot_be_loaded_fails_at_start_naming_the_variable(
    tmp_path: Path,
) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not a certificate")

    with pytest.raises(ConfigurationError) as caught:
        SchemaRegistry(settings("https://registry.test", ssl_certificate_location=str(cert)))

    assert caught.value.setting == "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"


def test_mutual_tls_with_a_client_certificate_and_our_own_ca(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    server_side.load_cert_chain(files.server_cert, files.server_key)
    server_side.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection

    with FakeRegistry(tls=server_side) as registry:
        schema_id = registry.add(json.dumps(SHIPMENT_SCHEMA))
        with_cert = settings(
            registry.url,
            ssl_ca_location=str(files.ca),
            ssl_certificate_location=str(files.client_cert),
            ssl_key_location=str(files.client_key),
        )
        without_cert = settings(registry.url, ssl_ca_location=str(files.ca))

        assert run(get(with_cert, schema_id)) == [SHIPMENT_SCHEMA]
        with pytest.raises(InfrastructureError):
            run(get(without_cert, schema_id))


def test_events_published_with_registered_schemas_are_decoded_through_the_registry(
    registry: FakeRegistry,
) -> None:
    publisher = EventCodec(STORE)
    event = CancellationEvent(
        "evt-9", "ord_9", "wh", datetime(2024, 5, 1, tzinfo=UTC), (LineQuantity("itm", 3),)
    )

    async def scenario() -> tuple[int, Any]:
        async with SchemaRegistry(settings(registry.url)) as client:
            schema_id = await client.register("events-value", CANCELLATION_SCHEMA)
            value = publisher.encode_confluent(event, schema_id)
            return schema_id, await EventCodec(STORE, client).decode_fetching(b"ord_9", value)

    schema_id, decoded = run(scenario())

    assert decoded.event == event
    assert (decoded.schema_id, decoded.schema_version) == (schema_id, 1)
