"""Fixtures for integration tests: consumer groups of real member processes, a strict sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from tests.integration.group_harness import Group

DEFAULT_SANDBOX_LATENCY_MS = 5


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """A strict sandbox on loopback (orders must be seeded). Each request waits the test
    module's `SANDBOX_LATENCY_MS`, DEFAULT_SANDBOX_LATENCY_MS when it names none. A module that
    needs another sandbox defines its own `sandbox` fixture."""
    latency = getattr(request.module, "SANDBOX_LATENCY_MS", DEFAULT_SANDBOX_LATENCY_MS)
    config = SandboxConfig(strict_orders=True, faults=FaultSettings(latency_ms=latency))
    with SandboxServer(config) as server:
        yield server


@pytest.fixture
def make_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[..., Group]]:
    """`make_group(partitions, sandbox_url, **env)`: fresh topic and group; members killed after."""
    groups: list[Group] = []

    def make(partitions: int, sandbox_url: str, **env: str) -> Group:
        group = Group.create(
            kafka_bootstrap,
            unique_name("events"),
            partitions=partitions,
            sandbox_url=sandbox_url,
            logs=tmp_path,
            extra_env=env,
        )
        groups.append(group)
        return group

    yield make
    for group in groups:
        for proc in group.members:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
