"""The agent as a whole on fakes (runtime, cgroups): its sources feed the pod manager, READY comes after the
first read, a removed manifest stops its pod, a reload re-reads the configuration, stop() ends every task and
leaves the pods running. Real: the manifest directory, the API socket, the clock (the sources poll in real
time; nothing here waits out a back-off)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp

from nodeagent.agent.app import Agent
from nodeagent.agent.factories import NodeParts
from nodeagent.agent.records import State
from nodeagent.config import parse_config
from nodeagent.sdnotify import Notifier
from tests.fakes.pod import NODE, FakeNode
from tests.unit.waiting import until

POD = """apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers: [{name: app, image: busybox}]
"""


def make_agent(tmp_path: Path, ready: Callable[[], None]) -> tuple[Agent, FakeNode]:
    fakes = FakeNode(tmp_path)
    (tmp_path / "manifests").mkdir()
    config_file = tmp_path / "config.yaml"
    data = {"staticPodPath": str(tmp_path / "manifests"), "fileCheckFrequency": "1s",
            "nodeagent": {"stateDir": str(tmp_path / "state"), "socket": str(tmp_path / "api.sock"),
                          "nodeName": "node1", "network": {"enabled": False}}}
    config_file.write_text(json.dumps(data))
    config, _ = parse_config(data, str(config_file))
    parts = NodeParts(cgroups=fakes.cgroups, runtime=fakes.runtime, kernel_log=None, node=NODE,
                      address="192.0.2.10", networks=None)
    agent = Agent(config, parts, str(config_file), notifier=Notifier({}), on_ready=ready)
    return agent, fakes


async def test_the_agent_runs_the_manifests_pods_and_stops_without_stopping_them(tmp_path: Path) -> None:
    ready = asyncio.Event()
    agent, fakes = make_agent(tmp_path, ready.set)
    (tmp_path / "manifests" / "web.yaml").write_text(POD)
    (tmp_path / "manifests" / "bad.yaml").write_text("kind: Pod\nspec: [")
    assert not agent.services.agent_ready.is_set()  # pods taken back repair their set-up after READY (worker.py)
    run = asyncio.create_task(agent.run())
    await asyncio.wait_for(ready.wait(), 10)
    assert agent.services.agent_ready.is_set()
    await until(lambda: bool(agent.pods.pods()) and agent.pods.pods()[0].records["app"].state is State.RUNNING)
    assert agent.status_line() == "1 pods: 1 running, 0 waiting for admission"
    assert "InvalidManifest" in [e.reason for e in agent.events.events()]
    assert agent.sources_status() == {"file": {"path": str(tmp_path / "manifests")}}
    connector = aiohttp.UnixConnector(path=str(tmp_path / "api.sock"))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get("http://localhost/api/v1/pods") as response:
        items = (await response.json())["items"]
    assert [p["metadata"]["name"] for p in items] == ["web-node1"]

    agent.apply_reload()  # the same configuration again: nothing changes
    (tmp_path / "manifests" / "web.yaml").unlink()
    await until(lambda: not agent.pods.pods())
    assert fakes.runtime.running["app"].exited

    (tmp_path / "manifests" / "web.yaml").write_text(POD.replace("web", "again"))
    await until(lambda: bool(agent.pods.pods()))
    agent.stop()
    await asyncio.wait_for(run, 10)
    assert not fakes.runtime.running["app"].exited  # the agent went, its pod did not


async def test_a_failing_source_stops_the_agent_with_its_error(tmp_path: Path) -> None:
    agent, _ = make_agent(tmp_path, lambda: None)

    async def broken() -> None:
        raise RuntimeError("the source broke")

    agent._run_sources = broken  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(agent.run(), 10)
    except RuntimeError as exc:
        assert str(exc) == "the source broke"
    else:
        raise AssertionError("the agent did not stop with the source's error")
