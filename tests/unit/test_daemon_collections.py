"""The cyclic collector, paused while the agent starts, resumes at READY or after a bound."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from nodeagent import daemon


@pytest.fixture
def paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.mark.usefixtures("paused")
async def test_collections_resume_at_ready() -> None:
    agent = SimpleNamespace(on_ready=lambda: None)
    daemon.collect_from_ready(cast(Any, agent))
    assert not gc.isenabled()
    agent.on_ready()
    assert gc.isenabled()


@pytest.mark.usefixtures("paused")
async def test_collections_resume_when_ready_is_late(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "COLLECTIONS_PAUSED_SECONDS", 0.01)
    daemon.collect_from_ready(cast(Any, SimpleNamespace(on_ready=lambda: None)))
    assert not gc.isenabled()
    await asyncio.sleep(0.05)
    assert gc.isenabled()
