"""Item 7 with the runc runtime: a pod.json that cannot be read, and the container runc runs is taken back
(found from conmon's files), not replaced; stopping the pod then removes it as any other."""

from __future__ import annotations

import signal

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.registry import Registry, auth_registry, registry  # noqa: F401
from tests.integration.test_runc import Images, RuncAgent, conmons, images, manifest, own_agent, runc_list, state

__all__ = ["images", "own_agent"]


def test_an_unreadable_state_file_costs_a_runc_pod_nothing(own_agent: RuncAgent, images: Images) -> None:
    agent: AgentHarness = own_agent.harness
    agent.start()
    agent.write("keeper.yaml", manifest("keeper", [{
        "name": "c", "image": images.busybox.reference, "volumeMounts": [{"name": "scratch", "mountPath": "/s"}],
        "command": ["sh", "-c", "test -e /s/mark && exec sleep 3600; touch /s/mark; exit 1"]}],
        volumes=[{"name": "scratch", "emptyDir": {}}]))
    before = wait_for(lambda: (s := state(agent, "keeper", "c")) and "running" in s["state"]
                      and s["restartCount"] == 1 and s, timeout=40, what="keeper running after one restart")
    uid = agent.pod("keeper")["metadata"]["uid"]
    agent.stop(signal.SIGKILL)
    (agent.state / "pods" / uid / "pod.json").write_text('{"version": 1, "uid": "')
    agent.start()
    now = wait_for(lambda: (s := state(agent, "keeper", "c")) and "running" in s["state"] and s,
                   what="keeper reported running")
    assert (now["containerID"], now["restartCount"]) == (before["containerID"], 1)
    assert runc_list(agent) == [before["containerID"].removeprefix("runc://")]
    assert len(conmons(agent)) == 1
    agent.remove("keeper.yaml")
    wait_for(lambda: not agent.pods(), timeout=20, what="keeper stopped")
    assert runc_list(agent) == [] and conmons(agent) == []
