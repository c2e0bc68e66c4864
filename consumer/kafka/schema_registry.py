"""The Confluent Schema Registry, through Confluent's own async client. [io: confluent-kafka]

confluent-kafka's `AsyncSchemaRegistryClient` speaks the REST API (auth, mTLS, caching, several
URLs); this module only translates its answers and errors into ours, by what the caller must do:

- UnknownSchema: the registry has no such id (404), or it is not an Avro record schema
  (the record is dead-lettered).
- ConfigurationError: the registry refuses our credentials (401/403) or the schema (409
  incompatible, 422 invalid) — stop and fix settings or the schema.
- InfrastructureError: the registry cannot be reached, times out, answers 5xx or garbage —
  retry later.

Messages never hold a secret: the registry's own text is scrubbed of every configured secret.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.config.registry import RegistrySettings
from consumer.core.errors import ConfigurationError, InfrastructureError, UnknownSchema


class SchemaRegistry:
    """Fetches writer schemas by id and registers schemas. Every call is a coroutine: nothing
    blocks the event loop. Schemas are cached by Confluent's client (an id is asked once).

    `max_retries` is the client's own retry count per call (connection errors, 408/429/5xx);
    the consumer keeps it at 0 and retries itself, so an outage shows in readiness at once.
    `aclose()` releases the connection pool (also `async with`).
    """

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        max_retries: int = 0,
        client: AsyncSchemaRegistryClient | None = None,
    ) -> None:
        """Raise ConfigurationError if the TLS material cannot be loaded."""
        self._settings = settings
        if client is None:
            conf = {**settings.client_config(), "max.retries": max_retries}
            try:
                client = AsyncSchemaRegistryClient(conf)
            except (OSError, ssl.SSLError, ValueError, TypeError) as exc:
                raise ConfigurationError(
                    f"cannot set up the schema registry client: {self._scrub(str(exc))}",
                    setting="SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"
                    if isinstance(exc, OSError | ssl.SSLError)
                    else "SCHEMA_REGISTRY_URL",
                ) from None
        self._client = client

    async def get_schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema (parsed JSON object) registered under `schema_id`."""
        try:
            schema = await self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                reason = f"schema id {schema_id} is not in the schema registry"
                raise UnknownSchema(reason) from None
            raise self._translate(exc, f"GET schema id {schema_id}") from None
        except Exception as exc:
            raise self._unreachable(exc, f"GET schema id {schema_id}") from None
        schema_type = schema.schema_type or "AVRO"  # absent means Avro (registry convention)
        if schema_type != "AVRO":
            raise UnknownSchema(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        try:
            definition = json.loads(schema.schema_str or "")
        except ValueError:
            definition = None
        if not isinstance(definition, dict):
            raise UnknownSchema(f"schema id {schema_id} is not an Avro record schema")
        return definition

    async def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register `schema` under `subject` (idempotent at the registry) and return its id."""
        text = json.dumps(schema, separators=(",", ":"))
        try:
            schema_id = await self._client.register_schema(subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code in (409, 422):
                raise ConfigurationError(
                    f"registry refused the schema for subject {subject!r}"
                    f" ({exc.http_status_code}): {self._scrub(exc.error_message)[:200]}",
                    setting="SCHEMA_REGISTRY_URL",
                ) from None
            raise self._translate(exc, f"register subject {subject!r}") from None
        except Exception as exc:
            raise self._unreachable(exc, f"register subject {subject!r}") from None
        if not isinstance(schema_id, int):
            raise InfrastructureError(f"registry answered without an id for subject {subject!r}")
        return schema_id

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> SchemaRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _translate(self, exc: SchemaRegistryError, what: str) -> Exception:
        status = exc.http_status_code
        if status in (401, 403):
            return ConfigurationError(
                f"schema registry refused our credentials ({status})",
                setting=self._settings.credentials_setting,
            )
        message = self._scrub(str(exc.error_message))[:200]
        return InfrastructureError(f"schema registry {what} answered {status}: {message}")

    def _unreachable(self, exc: Exception, what: str) -> InfrastructureError:
        # transport errors (connect, timeout, TLS), and garbage the client could not parse
        detail = self._scrub(str(exc))[:200]
        return InfrastructureError(f"schema registry {what} failed: {type(exc).__name__}: {detail}")

    def _scrub(self, text: str) -> str:
        for secret in self._settings.secrets():
            text = text.replace(secret, "***")
        return text
