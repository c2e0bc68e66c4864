"""A cached Confluent Schema Registry client. [io: httpx]

Only the two REST endpoints the product uses:

    GET  /schemas/ids/{id}               -> {"schema": "<JSON string>", "schemaType"?: "AVRO"}
    POST /subjects/{subject}/versions    {"schema": "<JSON string>"} -> {"id": n}

The consumer resolves Confluent-framed records through `get_schema` (via `consumer.codec`); the
publisher and tests `register` schemas. Errors, by what the caller must do:

- UnknownSchema: the id is not in the registry, or is not an Avro record schema (dead-letter).
- ConfigurationError: the registry refuses us (401/403) or the schema (409 incompatible, 422
  invalid) — stop and fix settings or the schema.
- InfrastructureError: the registry cannot be reached or answers 5xx / garbage — retry later.

Credentials in the URL (`https://user:secret@host`) are used for basic auth and never appear in
errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from consumer.errors import ConfigurationError, InfrastructureError, UnknownSchema

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_SETTING = "SCHEMA_REGISTRY_URL"


class SchemaRegistryClient:
    """Fetches writer schemas by id (each id once, then from memory) and registers schemas.

    Calls block for at most `timeout` seconds per request. Thread-safe. `close()` releases the
    connection pool (the client is also a context manager); calls after it raise
    InfrastructureError, except for ids already cached.
    """

    def __init__(
        self, url: str, *, transport: httpx.BaseTransport | None = None, timeout: float = 10
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={"Accept": f"{_CONTENT_TYPE}, application/json"},
        )
        self._cache: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get_schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema (parsed JSON object) registered under `schema_id`.

        Fetched once per id; concurrent callers of the same new id wait for one fetch. Failures are
        not cached: an id missing now is asked for again next time.
        """
        with self._lock:
            cached = self._cache.get(schema_id)
            if cached is None:
                cached = self._fetch(schema_id)
                self._cache[schema_id] = cached
            return cached

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register `schema` under `subject` (idempotent at the registry) and return its id."""
        response = self._request(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            content=json.dumps({"schema": json.dumps(schema, separators=(",", ":"))}),
            headers={"Content-Type": _CONTENT_TYPE},
            passthrough=(409, 422),
        )
        if response.status_code in (409, 422):
            raise ConfigurationError(
                f"registry refused the schema for subject {subject!r}"
                f" ({response.status_code}): {_message(response)}",
                setting=_SETTING,
            )
        schema_id = _json(response).get("id")
        if not isinstance(schema_id, int):
            raise InfrastructureError(f"registry answered without an id for subject {subject!r}")
        return schema_id

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _fetch(self, schema_id: int) -> dict[str, Any]:
        response = self._request("GET", f"/schemas/ids/{schema_id}", passthrough=(404,))
        if response.status_code == 404:
            raise UnknownSchema(f"schema id {schema_id} is not in the schema registry")
        body = _json(response)
        schema_type = body.get("schemaType", "AVRO")  # absent means Avro (registry convention)
        if schema_type != "AVRO":
            raise UnknownSchema(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        text = body.get("schema")
        try:
            schema = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            schema = None
        if not isinstance(schema, dict):
            raise UnknownSchema(f"schema id {schema_id} is not an Avro record schema")
        return schema

    def _request(
        self, method: str, path: str, *, passthrough: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """Send; raise for transport failures and error statuses other than `passthrough`."""
        if self._http.is_closed:
            raise InfrastructureError("schema registry client is closed")
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise InfrastructureError(f"schema registry {method} {path} failed: {exc!r}") from exc
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"schema registry refused our credentials ({response.status_code})",
                setting=_SETTING,
            )
        if response.status_code >= 400 and response.status_code not in passthrough:
            raise InfrastructureError(
                f"schema registry {method} {path} answered {response.status_code}:"
                f" {_message(response)}"
            )
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        reason = f"schema registry answered non-JSON ({response.status_code})"
        raise InfrastructureError(reason) from exc
    if not isinstance(body, dict):
        raise InfrastructureError(f"schema registry answered {type(body).__name__}, not an object")
    return body


def _message(response: httpx.Response) -> str:
    """The registry's `message`, bounded: error text ends up in logs."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:200] if message is not None else response.text[:200]
