"""Fixtures shared by every tier.

Kafka is real: one KRaft broker per test session, started from Apache Kafka's jars by
deploy/kafka/local_kafka.py (or an existing one named by FC_TEST_KAFKA_BOOTSTRAP). Each test gets
its own topic and group names.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from hypothesis import HealthCheck, settings

# The suite shares 2 cores with a Kafka broker and the members it starts: timing-based health
# checks and deadlines would fail on load, not on behaviour. Example counts stay the default.
settings.register_profile(
    "shared-machine",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("shared-machine")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OPENAPI_PATH = SHARED / "contracts" / "dr-fulfillments-openapi.json"


def _load_local_kafka() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_kafka", ROOT / "deploy" / "kafka" / "local_kafka.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_kafka"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker for the whole session."""
    existing = os.environ.get("FC_TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is needed to run the real Kafka broker the integration tests use")
    local_kafka = _load_local_kafka()
    broker = local_kafka.LocalBroker(
        tmp_path_factory.mktemp("kafka"), local_kafka.free_port(), local_kafka.free_port()
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop(timeout=5)  # its data is thrown away: no need to wait for a clean shutdown


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """`unique_name("orders")` -> a topic or group name no other test uses."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]

    def make(prefix: str) -> str:
        return f"{prefix}.{base}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Callable[..., str]:
    """Create a fresh topic: `topic_factory(partitions=12)` -> its name."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def create(partitions: int = 1, prefix: str = "events") -> str:
        name = unique_name(prefix)
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        futures[name].result(timeout=30)
        return name

    return create


@pytest.fixture(scope="session")
def openapi_document() -> dict[str, object]:
    """Digital River's OpenAPI file from ../shared; tests that need it skip in a user's clone."""
    if not OPENAPI_PATH.exists():
        pytest.skip("../shared/contracts is not beside this clone (CI has it)")
    loaded: dict[str, object] = json.loads(OPENAPI_PATH.read_text())
    return loaded
