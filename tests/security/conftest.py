from __future__ import annotations

import pytest

from tests.integration.conftest import agent, agent_root, harness
from tests.integration.test_http_source import server

__all__ = ["agent", "agent_root", "harness", "server"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.fspath) and "agent_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
