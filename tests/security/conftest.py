"""Hostile manifests against a real agent (root): the integration tests' fixtures, and their `root` mark."""

from __future__ import annotations

import pytest

from tests.integration.conftest import agent, agent_root, harness  # noqa: F401  (fixtures used here too)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.fspath):
            item.add_marker(pytest.mark.root)
