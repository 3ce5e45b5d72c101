from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import AgentHarness


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture
def agent_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups and starts processes")
    return tmp_path


@pytest.fixture
def harness(agent_root: Path) -> Iterator[AgentHarness]:
    """An agent set up but not started: the test configures and starts it."""
    created = AgentHarness(agent_root)
    try:
        yield created
    finally:
        try:
            created.clean_up()
        finally:
            if os.environ.get("NODEAGENT_TEST_LOG"):
                print(created.agent_log())


@pytest.fixture
def agent(harness: AgentHarness) -> AgentHarness:
    harness.start()
    return harness
