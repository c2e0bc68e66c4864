"""The Schema Registry client against an in-process fake of the Confluent REST endpoints."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from consumer.codec import EventCodec, SchemaStore
from consumer.errors import ConfigurationError, InfrastructureError, UnknownSchema
from consumer.events import CancellationEvent, LineQuantity
from consumer.schema_registry import SchemaRegistryClient

STORE = SchemaStore.load_default()
SHIPMENT_SCHEMA = dict(STORE.latest("shipment").definition)


class FakeRegistry:
    """`GET /schemas/ids/{id}` and `POST /subjects/{subject}/versions`, as Confluent answers them.

    Ids are global and a schema registered twice (under any subject) keeps its id. `fail_with`
    makes every request answer that status; `unreachable` makes the transport fail.
    """

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: Counter[str] = Counter()
        self.authorization: list[str | None] = []
        self.fail_with: int | None = None
        self.unreachable = False
        self.schema_type: str | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.requests[f"{request.method} {path}"] += 1
        self.authorization.append(request.headers.get("Authorization"))
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        if self.fail_with is not None:
            return _error(self.fail_with, "injected failure")
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["schemas", "ids"] and len(parts) == 3:
            text = self.schemas.get(int(parts[2]))
            if text is None:
                return _error(404, f"Schema {parts[2]} not found", code=40403)
            body: dict[str, object] = {"schema": text}
            if self.schema_type is not None:
                body["schemaType"] = self.schema_type
            return httpx.Response(200, json=body)
        if request.method == "POST" and parts[0] == "subjects" and parts[2:] == ["versions"]:
            assert request.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
            text = json.loads(request.content)["schema"]
            json.loads(text)  # a registry refuses what is not JSON
            schema_id = next((i for i, s in self.schemas.items() if s == text), None)
            if schema_id is None:
                schema_id = len(self.schemas) + 1
                self.schemas[schema_id] = text
            self.subjects.setdefault(parts[1], []).append(schema_id)
            return httpx.Response(200, json={"id": schema_id})
        return _error(404, "HTTP 404 Not Found", code=404)


def _error(status: int, message: str, *, code: int | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code or status * 100, "message": message})


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def client(registry: FakeRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient("http://registry.test:8081/", transport=registry.transport())


def test_a_registered_schema_is_fetched_back_by_its_id(client: SchemaRegistryClient) -> None:
    schema_id = client.register("events-value", SHIPMENT_SCHEMA)

    assert client.get_schema(schema_id) == SHIPMENT_SCHEMA


def test_registering_the_same_schema_again_returns_the_same_id(
    client: SchemaRegistryClient,
) -> None:
    first = client.register("events-value", SHIPMENT_SCHEMA)
    other = client.register("events-value", dict(STORE.latest("cancellation").definition))

    assert client.register("events-value", SHIPMENT_SCHEMA) == first != other


def test_each_schema_id_is_fetched_once(
    registry: FakeRegistry, client: SchemaRegistryClient
) -> None:
    schema_id = client.register("events-value", SHIPMENT_SCHEMA)
    for _ in range(5):
        client.get_schema(schema_id)

    assert registry.requests[f"GET /schemas/ids/{schema_id}"] == 1


def test_an_id_the_registry_does_not_have_is_an_unknown_schema_and_is_asked_again(
    registry: FakeRegistry, client: SchemaRegistryClient
) -> None:
    with pytest.raises(UnknownSchema, match="schema id 1 is not in the schema registry"):
        client.get_schema(1)
    client.register("events-value", SHIPMENT_SCHEMA)  # id 1 appears

    assert client.get_schema(1) == SHIPMENT_SCHEMA
    assert registry.requests["GET /schemas/ids/1"] == 2


def test_a_schema_that_is_not_avro_is_an_unknown_schema(
    registry: FakeRegistry, client: SchemaRegistryClient
) -> None:
    registry.schemas[1] = json.dumps({"type": "object"})
    registry.schema_type = "JSON"

    with pytest.raises(UnknownSchema, match="is a JSON schema, not Avro"):
        client.get_schema(1)


def test_an_avro_schema_that_is_not_a_record_object_is_an_unknown_schema(
    registry: FakeRegistry, client: SchemaRegistryClient
) -> None:
    registry.schemas[1] = json.dumps(["null", "string"])

    with pytest.raises(UnknownSchema, match="not an Avro record schema"):
        client.get_schema(1)


@pytest.mark.parametrize("status", [500, 503, 429, 400])
def test_registry_failures_are_infrastructure_errors(
    registry: FakeRegistry, client: SchemaRegistryClient, status: int
) -> None:
    registry.fail_with = status

    with pytest.raises(InfrastructureError, match=f"answered {status}: injected failure"):
        client.get_schema(1)
    with pytest.raises(InfrastructureError):
        client.register("events-value", SHIPMENT_SCHEMA)


def test_an_unreachable_registry_is_an_infrastructure_error_that_hides_credentials(
    registry: FakeRegistry,
) -> None:
    registry.unreachable = True
    client = SchemaRegistryClient("https://fc:s3cret@registry.test", transport=registry.transport())

    with pytest.raises(InfrastructureError) as caught:
        client.get_schema(1)

    assert "s3cret" not in str(caught.value)


def test_credentials_in_the_url_are_sent_as_basic_auth(registry: FakeRegistry) -> None:
    client = SchemaRegistryClient("https://fc:s3cret@registry.test", transport=registry.transport())

    client.register("events-value", SHIPMENT_SCHEMA)

    assert registry.authorization == ["Basic ZmM6czNjcmV0"]  # base64("fc:s3cret")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_a_configuration_error(
    registry: FakeRegistry, client: SchemaRegistryClient, status: int
) -> None:
    registry.fail_with = status

    with pytest.raises(ConfigurationError, match="SCHEMA_REGISTRY_URL"):
        client.get_schema(1)


@pytest.mark.parametrize("status", [409, 422])
def test_a_schema_the_registry_refuses_is_a_configuration_error(
    registry: FakeRegistry, client: SchemaRegistryClient, status: int
) -> None:
    registry.fail_with = status

    with pytest.raises(ConfigurationError, match=f"refused the schema .* \\({status}\\)"):
        client.register("events-value", SHIPMENT_SCHEMA)


def test_subjects_are_escaped_in_the_path(
    registry: FakeRegistry, client: SchemaRegistryClient
) -> None:
    client.register("team/a events-value", SHIPMENT_SCHEMA)

    assert registry.requests["POST /subjects/team%2Fa%20events-value/versions"] == 1


def test_a_client_is_a_context_manager_that_closes(registry: FakeRegistry) -> None:
    with SchemaRegistryClient("http://registry.test", transport=registry.transport()) as client:
        client.register("events-value", SHIPMENT_SCHEMA)

    with pytest.raises(InfrastructureError):
        client.get_schema(1)


def test_events_published_with_registered_schemas_are_decoded_through_the_registry(
    client: SchemaRegistryClient,
) -> None:
    publisher = EventCodec(STORE)
    ids = {
        kind: client.register("warehouse.fulfillment-events-value", schema)
        for kind, schema in publisher.writer_schemas().items()
    }
    event = CancellationEvent(
        "evt-9", "ord_9", "wh", datetime(2024, 5, 1, tzinfo=UTC), (LineQuantity("itm", 3),)
    )
    value = publisher.encode_confluent(event, ids["cancellation"])

    decoded = EventCodec(STORE, registry=client).decode(b"ord_9", value)

    assert decoded.event == event
    assert (decoded.schema_id, decoded.schema_version) == (ids["cancellation"], 1)
