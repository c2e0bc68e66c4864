"""Fixtures for integration tests: consumer groups of real member processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.group_harness import Group


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
