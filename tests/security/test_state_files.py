"""A state file the agent cannot read, or a source it cannot read, never costs a pod its processes or its
data (issue 12, item 7): the bad file is moved aside and reported, what still runs is taken back."""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.test_http_source import ManifestServer, url_agent

KEEPER = """kind: Pod
metadata: {name: keeper}
spec:
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: c
    image: x
    command: [sh, -c, 'test -e %(mark)s && exec sleep 3600; touch %(mark)s; exit 1']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
"""
CORRUPTIONS: dict[str, Callable[[str], str]] = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\xff not json at all",
    "newer version": lambda text: json.dumps({**json.loads(text), "version": 99}),
}


def running(agent: AgentHarness, name: str) -> dict[str, Any] | None:
    status = agent.container_status(name, "c")
    return status if "running" in status["state"] else None


def started_keeper(agent: AgentHarness) -> tuple[str, dict[str, Any], list[int], Path]:
    """keeper running after one crash (restartCount 1), a file in its emptyDir."""
    agent.write("keeper.yaml", KEEPER % {"mark": agent.root / "crashed-once"})
    status = wait_for(lambda: (s := running(agent, "keeper")) and s["restartCount"] == 1 and s, timeout=40,
                      what="keeper running after one restart")
    uid = agent.pod("keeper")["metadata"]["uid"]
    data = agent.state / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "scratch" / "precious"
    data.write_text("keep me")
    return uid, status, sleeping(agent), data


def sleeping(agent: AgentHarness) -> list[int]:
    """The container's one process, once its shell has become `sleep`."""
    cgroup = agent.cgroup_path("keeper", "c")
    return wait_for(lambda: (pids := agent.procs(cgroup)) and len(pids) == 1
                    and Path(f"/proc/{pids[0]}/comm").read_text() == "sleep\n" and pids, what="sleep")


def ready_count_is(agent: AgentHarness, count: int) -> bool:
    """The agent has said it is running `count` times (once per start)."""
    return agent.agent_log().count("nodeagent is running") == count


def quarantined(agent: AgentHarness, uid: str) -> list[Path]:
    return sorted((agent.state / "pods" / uid).glob("pod.json.*"))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_an_unreadable_state_file_costs_the_running_pod_nothing(agent: AgentHarness, corruption: str) -> None:
    uid, before, pids, data = started_keeper(agent)
    agent.stop(signal.SIGKILL)
    state_file = agent.state / "pods" / uid / "pod.json"
    state_file.write_text(CORRUPTIONS[corruption](state_file.read_text()))
    agent.start()
    now = wait_for(lambda: running(agent, "keeper"), what="keeper reported running")
    assert now["containerID"] == before["containerID"]  # taken back, not replaced
    assert now["restartCount"] == 1
    assert agent.procs(agent.cgroup_path("keeper", "c")) == pids
    assert data.read_text() == "keep me"
    assert [p.name.split("-")[0] for p in quarantined(agent, uid)] == ["pod.json.quarantined"]
    wait_for(lambda: json.loads(state_file.read_text())["version"] == 1, what="the state saved anew")
    warnings = [e for e in agent.events() if e["reason"] == "StateQuarantined"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning" and uid in warnings[0]["message"]
    assert f"state file of pod {uid}" in agent.agent_log()
    doctor = agent.doctor().stdout
    assert "quarantined state" in doctor and str(quarantined(agent, uid)[0]) in doctor
    # the taken-back container is the pod's: stopping the pod stops it
    agent.remove("keeper.yaml")
    wait_for(lambda: not agent.pods(), what="keeper stopped")
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_an_unreadable_state_file_of_a_pod_no_source_names_kills_nothing(agent: AgentHarness) -> None:
    uid, _, pids, data = started_keeper(agent)
    agent.stop(signal.SIGKILL)
    agent.remove("keeper.yaml")
    (agent.state / "pods" / uid / "pod.json").write_text("{")
    for start in (1, 2):  # and not on the next start either
        agent.start()
        wait_for(functools.partial(ready_count_is, agent, start + 1), what="READY")
        assert any(e["reason"] == "StateQuarantined" for e in agent.events()) == (start == 1)
        assert f"pod uid={uid}: its state is quarantined" in agent.agent_log()
        agent.write("other.yaml", "kind: Pod\nmetadata: {name: other}\nspec:\n  containers: [{name: c, image: x, "
                                  "command: [sleep, '3600']}]\n")
        wait_for(lambda: running(agent, "other"), what="the agent at work")
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
        assert data.read_text() == "keep me"
        agent.stop()


def test_a_manifest_directory_that_cannot_be_read_stops_nothing(agent: AgentHarness) -> None:
    _, before, pids, data = started_keeper(agent)
    agent.stop(signal.SIGKILL)
    os.rename(agent.manifests, agent.root / "elsewhere")
    os.symlink(agent.manifests, agent.manifests)  # ELOOP: the directory exists but cannot be listed
    agent.start()
    wait_for(lambda: f"reading staticPodPath {agent.manifests}" in agent.agent_log(), what="the error logged")
    wait_for(lambda: running(agent, "keeper"), what="keeper reported running")
    assert running(agent, "keeper")["containerID"] == before["containerID"]  # type: ignore[index]
    assert agent.procs(agent.cgroup_path("keeper", "c")) == pids
    assert data.read_text() == "keep me"
    os.unlink(agent.manifests)
    os.rename(agent.root / "elsewhere", agent.manifests)
    agent.remove("keeper.yaml")  # readable again, and now it says: no keeper
    wait_for(lambda: not agent.pods(), timeout=20, what="keeper stopped once the directory says so")


def test_a_url_pod_survives_an_unreachable_url_at_start_with_its_data(harness: AgentHarness,
                                                                      server: ManifestServer) -> None:
    server.body = (KEEPER % {"mark": harness.root / "crashed-once"}).encode()
    agent = url_agent(harness, server)
    before = wait_for(lambda: (s := running(agent, "keeper")) and s["restartCount"] == 1 and s, timeout=40,
                      what="keeper running after one restart")
    uid = agent.pod("keeper")["metadata"]["uid"]
    data = agent.state / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "scratch" / "precious"
    data.write_text("keep me")
    pids = sleeping(agent)
    agent.stop(signal.SIGKILL)
    server.stop()
    agent.start()
    wait_for(lambda: any(e["reason"] == "ManifestURLFailed" for e in agent.events()), what="the URL refused")
    wait_for(lambda: agent.agent_log().count("nodeagent is running") == 2, what="READY again")
    assert running(agent, "keeper")["containerID"] == before["containerID"]  # type: ignore[index]
    assert agent.procs(agent.cgroup_path("keeper", "c")) == pids
    assert data.read_text() == "keep me"


def test_a_taken_back_pod_does_not_run_its_init_containers_again(agent: AgentHarness) -> None:
    runs = agent.root / "init-runs"
    agent.write("inited.yaml", f"""kind: Pod
metadata: {{name: inited}}
spec:
  initContainers: [{{name: setup, image: x, command: [sh, -c, 'echo ran >> {runs}']}}]
  containers: [{{name: c, image: x, command: [sleep, '3600']}}]
""")
    before = wait_for(lambda: running(agent, "inited"), what="inited running")
    uid = agent.pod("inited")["metadata"]["uid"]
    agent.stop(signal.SIGKILL)
    (agent.state / "pods" / uid / "pod.json").write_text("")
    agent.start()
    now = wait_for(lambda: running(agent, "inited"), what="inited running again")
    assert now["containerID"] == before["containerID"]
    init = agent.container_status("inited", "setup")
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert agent.pod("inited")["status"]["phase"] == "Running"
    assert runs.read_text() == "ran\n"
