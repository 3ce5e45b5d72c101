"""subPath through symbolic links with the cri runtime (issue 12 item 1), against a real containerd:
refused before containerd is asked; a subPath inside the volume mounted through the agent's bind mount.

The agent runs in containerd's network and mount namespaces, as a kubelet shares its containerd's mount
namespace: the subPath bind mounts it makes must be what containerd mounts in the containers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.test_cri import configure, remove_sandboxes
from tests.security.subpaths import REFUSED, escape_pod, mounts_under, waiting

__all__ = ["containerd", "cri_images"]  # the fixtures, imported for pytest


@pytest.fixture
def cri_agent(harness: AgentHarness, containerd: Containerd) -> Iterator[AgentHarness]:
    configure(harness, containerd)
    assert containerd.holder is not None
    with open(harness.log_path, "ab") as log:
        harness.process = subprocess.Popen(
            ["nsenter", "-t", str(containerd.holder.pid), "-n", "-m", sys.executable, "-m", "nodeagent", "run",
             "--config", str(harness.config_path)], stdout=log, stderr=log)
    wait_for(lambda: harness.socket.exists() and harness.client.get("/api/v1/pods"), timeout=20,
             what="the agent's API")
    yield harness
    harness.stop()
    asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups


def agent_pid(agent: AgentHarness) -> int:
    assert agent.process is not None
    return agent.process.pid


def test_cri_refuses_a_subpath_through_a_symlink_to_the_nodes_root(cri_agent: AgentHarness, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("a file of the node\n")
    cri_agent.write("escape.yaml", escape_pod("escape", Path("/shared"), Path("/mnt/escape"), outside,
                                              BUSYBOX_IMAGE))
    status = wait_for(lambda: waiting(cri_agent, "escape", "victim"), timeout=30, what="CreateContainerConfigError")
    assert status["message"] == REFUSED
    assert cri_agent.pod("escape")["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    failed = [e for e in cri_agent.events() if e["reason"] == "Failed"
              and e["involvedObject"]["name"] == f"escape-{NODE}"]
    assert [(e["type"], e["message"]) for e in failed] == [("Warning", f"Error: {REFUSED}")]
    assert not (outside / "written").exists()
    assert mounts_under(cri_agent.state / "pods", agent_pid(cri_agent)) == []


def test_cri_mounts_a_subpath_inside_the_volume(cri_agent: AgentHarness) -> None:
    cri_agent.write("inside.yaml", f"""
kind: Pod
metadata: {{name: inside}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: fill
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, "mkdir /shared/real && echo inside > /shared/real/file"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, "cat /real/file; echo written > /real/out; exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /real, subPath: real}}]
  volumes: [{{name: shared, emptyDir: {{}}}}]
""")
    wait_for(lambda: "running" in cri_agent.container_status("inside", "app")["state"], timeout=30,
             what="app running")
    uid = cri_agent.pod("inside")["metadata"]["uid"]
    pod_dir = cri_agent.state / "pods" / uid
    volume = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "shared"
    assert wait_for(lambda: cri_agent.cli("logs", "inside", "-c", "app").stdout, what="logs") == "inside\n"
    assert wait_for(lambda: (volume / "real/out").exists() and (volume / "real/out").read_text(),
                    what="out") == "written\n"
    assert mounts_under(pod_dir / "volume-subpaths", agent_pid(cri_agent)) == [str(pod_dir / "volume-subpaths/shared/app/0")]
    cri_agent.remove("inside.yaml")
    wait_for(lambda: not pod_dir.exists(), timeout=30, what="the pod's directory gone")
    assert mounts_under(cri_agent.state / "pods", agent_pid(cri_agent)) == []
