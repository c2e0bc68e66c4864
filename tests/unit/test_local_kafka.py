"""The local broker script's own logic (the broker itself is exercised by every Kafka test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import _load_local_kafka


def test_a_cluster_id_never_starts_with_a_dash_which_the_storage_tool_would_take_for_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local_kafka = _load_local_kafka()
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64url of 0xF8.. starts with '-'
    plain = uuid.UUID(bytes=b"\x00" * 16)
    draws: Iterator[uuid.UUID] = iter([dash_first, plain])
    monkeypatch.setattr(local_kafka.uuid, "uuid4", lambda: next(draws))
    found = local_kafka._cluster_id()
    assert not found.startswith("-")
    assert found == "AAAAAAAAAAAAAAAAAAAAAA"
