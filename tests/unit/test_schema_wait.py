"""Waiting for a writer schema: outages are retried with backoff and reported, never fatal."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.core.errors import ConfigurationError, InfrastructureError, UnknownSchema
from consumer.member.schema_wait import SchemaFetcher

STORE = SchemaStore.load_default()
SHIPMENT = dict(STORE.latest("shipment").definition)


class FlakyRegistry:
    """Unreachable for the first `outage` calls, then answers from `schemas` (else 404)."""

    def __init__(self, outage: int, schemas: Mapping[int, Mapping[str, Any]]) -> None:
        self.outage = outage
        self.schemas = schemas
        self.calls = 0

    async def get_schema(self, schema_id: int) -> Mapping[str, Any]:
        self.calls += 1
        await asyncio.sleep(0)  # a real request yields to the loop
        if self.calls <= self.outage:
            raise InfrastructureError("schema registry GET schema id 1 failed: ConnectError")
        if schema_id not in self.schemas:
            raise UnknownSchema(f"schema id {schema_id} is not in the schema registry")
        return self.schemas[schema_id]


class Refusing:
    async def get_schema(self, schema_id: int) -> Mapping[str, Any]:
        raise ConfigurationError("refused our credentials (401)", setting="SCHEMA_REGISTRY_URL")


def fetcher_for(registry: Any) -> tuple[SchemaFetcher, EventCodec, list[str | None], list[float]]:
    codec = EventCodec(STORE, registry)
    reports: list[str | None] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return SchemaFetcher(codec, on_down=reports.append, sleep=sleep), codec, reports, sleeps


def test_an_outage_is_retried_with_backoff_and_reported_until_the_registry_is_back() -> None:
    registry = FlakyRegistry(outage=4, schemas={1: SHIPMENT})
    fetcher, codec, reports, sleeps = fetcher_for(registry)

    with capture_logs() as logs:
        fetched = asyncio.run(fetcher.fetch(1))

    assert fetched
    assert registry.calls == 5
    assert len(sleeps) == 4
    assert sleeps[-1] > sleeps[0]
    assert len(reports) == 5
    assert all(r is not None and "ConnectError" in r for r in reports[:4])
    assert reports[-1] is None  # ready again
    events = [e["event"] for e in logs]
    assert events.count("schema_registry_unreachable") == 1
    assert events.count("schema_registry_reachable") == 1
    asyncio.run(codec.fetch_schema(1))  # held now: no further call
    assert registry.calls == 5


def test_an_id_the_registry_does_not_have_is_raised_not_retried() -> None:
    registry = FlakyRegistry(outage=1, schemas={})
    fetcher, _, reports, _ = fetcher_for(registry)

    with pytest.raises(UnknownSchema):
        asyncio.run(fetcher.fetch(7))

    assert registry.calls == 2
    assert reports[-1] is None  # it answered: reachable


def test_refused_credentials_are_raised_not_retried() -> None:
    fetcher, _, reports, sleeps = fetcher_for(Refusing())

    with pytest.raises(ConfigurationError):
        asyncio.run(fetcher.fetch(1))

    assert sleeps == []
    assert reports == []


def test_a_fetch_nobody_wants_any_more_gives_up_after_the_next_wait() -> None:
    registry = FlakyRegistry(outage=1_000, schemas={1: SHIPMENT})
    fetcher, _, _, sleeps = fetcher_for(registry)

    assert asyncio.run(fetcher.fetch(1, wanted=lambda: len(sleeps) < 3)) is False
    assert registry.calls == 3


def test_waiters_of_one_id_share_one_request() -> None:
    registry = FlakyRegistry(outage=0, schemas={1: SHIPMENT})
    fetcher, _, _, _ = fetcher_for(registry)

    async def many() -> list[bool]:
        return list(await asyncio.gather(*(fetcher.fetch(1) for _ in range(5))))

    assert asyncio.run(many()) == [True] * 5
    assert registry.calls == 1
