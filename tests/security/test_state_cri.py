"""Item 7 with the cri runtime: a pod.json that cannot be read, and the container containerd runs is taken
back (found by its labels), not joined by a second one; stopping the pod then removes it."""

from __future__ import annotations

import signal

from nodeagent.runtime.cri import api_pb2 as cri
from tests.integration.containerd import Containerd, containerd, cri_images
from tests.integration.harness import AgentHarness, wait_for
from tests.integration.test_cri import agent, cri_containers, pod, running, state

__all__ = ["agent", "containerd", "cri_images"]

KEEPER = pod("keeper", "test -e /s/mark && exec sleep 3600; touch /s/mark; exit 1",
             extra="  terminationGracePeriodSeconds: 2\n  volumes: [{name: scratch, emptyDir: {}}]\n",
             container="    volumeMounts: [{name: scratch, mountPath: /s}]\n")


def test_an_unreadable_state_file_costs_a_cri_pod_nothing(agent: AgentHarness, containerd: Containerd) -> None:
    agent.write("keeper.yaml", KEEPER)
    before = wait_for(lambda: running(agent, "keeper") and (s := state(agent, "keeper"))["restartCount"] == 1 and s,
                      timeout=60, what="keeper running after one restart")
    uid = agent.pod("keeper")["metadata"]["uid"]
    agent.stop(signal.SIGKILL)
    (agent.state / "pods" / uid / "pod.json").write_text("garbage")
    agent.start()
    wait_for(lambda: running(agent, "keeper"), timeout=30, what="keeper reported running")
    now = state(agent, "keeper")
    assert (now["containerID"], now["restartCount"]) == (before["containerID"], 1)
    live = [c for c in cri_containers(containerd) if c.state == cri.CONTAINER_RUNNING]
    assert [c.id for c in live] == [before["containerID"].removeprefix("containerd://")]
    agent.remove("keeper.yaml")
    wait_for(lambda: not agent.pods(), timeout=30, what="keeper stopped")
