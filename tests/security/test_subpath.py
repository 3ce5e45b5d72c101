"""subPath through symbolic links (issue 12 item 1, the kubelet's CVE-2017-1002101) with the process
runtime: an init container plants `ln -s / <volume>/escape`, the next container mounts `subPath: escape`.
It must be refused (CreateContainerConfigError), never see the node's tree; a subPath that stays inside the
volume still works; and the subPath mounts go with the container's restart, the pod, or an agent crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.security.subpaths import REFUSED, escape_pod, mounts_under, waiting


def test_a_subpath_through_a_symlink_to_the_nodes_root_is_refused(agent: AgentHarness, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("a file of the node\n")
    agent.write("escape.yaml", escape_pod("escape", tmp_path / "shared", tmp_path / "mnt", outside))
    status = wait_for(lambda: waiting(agent, "escape", "victim"), what="CreateContainerConfigError")
    assert status["message"] == REFUSED
    events = [e for e in agent.events() if e["reason"] == "Failed"
              and e["involvedObject"]["name"] == f"escape-{NODE}"]
    assert [(e["type"], e["message"]) for e in events] == [("Warning", f"Error: {REFUSED}")]
    assert events[0]["involvedObject"]["fieldPath"] == "spec.containers{victim}"
    assert agent.container_status("escape", "victim")["restartCount"] == 0
    assert not (outside / "written").exists()
    assert "a file of the node" not in agent.cli("logs", "escape", "-c", "victim", check=False).stdout
    assert mounts_under(agent.state / "pods") == []  # nothing of the node's / mounted for it
    agent.remove("escape.yaml")
    wait_for(lambda: not any(p["metadata"]["name"] == f"escape-{NODE}" for p in agent.pods()), what="pod gone")


def test_a_subpath_inside_the_volume_works_and_its_mounts_go_with_restarts_and_the_pod(
        agent: AgentHarness, tmp_path: Path) -> None:
    shared, linked, made = tmp_path / "shared", tmp_path / "linked", tmp_path / "made"
    agent.write("inside.yaml", f"""
kind: Pod
metadata: {{name: inside}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: fill
    image: busybox
    command: [sh, -c, "mkdir {shared}/real && echo inside > {shared}/real/file && ln -s real {shared}/link"]
    volumeMounts: [{{name: shared, mountPath: {shared}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "cat {linked}/file; echo written > {made}/out; exec sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: {linked}, subPath: link}}
    - {{name: shared, mountPath: {made}, subPath: made/by/the-agent}}
  volumes: [{{name: shared, emptyDir: {{}}}}]
""")
    wait_for(lambda: "running" in agent.container_status("inside", "app")["state"], what="app running")
    uid = agent.pod("inside")["metadata"]["uid"]
    pod_dir = agent.state / "pods" / uid
    volume = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "shared"
    assert wait_for(lambda: agent.cli("logs", "inside", "-c", "app").stdout, what="logs") == "inside\n"
    assert wait_for(lambda: (volume / "made/by/the-agent/out").exists()
                    and (volume / "made/by/the-agent/out").read_text(), what="out") == "written\n"
    assert oct((volume / "made/by/the-agent").stat().st_mode & 0o777) == oct(0o777)  # the volume's mode
    subpaths = pod_dir / "volume-subpaths"
    assert sorted(mounts_under(subpaths)) == [str(subpaths / "shared/app/0"), str(subpaths / "shared/app/1")]
    # a restart mounts them afresh: the old ones go first
    pid = wait_for(lambda: agent.procs(agent.cgroup_path("inside", "app")), what="its process")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: agent.container_status("inside", "app")["restartCount"] == 1
             and "running" in agent.container_status("inside", "app")["state"], timeout=30, what="restart")
    assert sorted(mounts_under(subpaths)) == [str(subpaths / "shared/app/0"), str(subpaths / "shared/app/1")]
    agent.remove("inside.yaml")
    wait_for(lambda: not pod_dir.exists(), what="the pod's directory gone")
    assert mounts_under(agent.state) == []


def test_an_agent_crash_leaves_no_subpath_mount_behind(agent: AgentHarness, tmp_path: Path) -> None:
    agent.write("crash.yaml", f"""
kind: Pod
metadata: {{name: crash}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: shared, mountPath: {tmp_path / "data"}, subPath: data}}]
  volumes: [{{name: shared, emptyDir: {{}}}}]
""")
    wait_for(lambda: "running" in agent.container_status("crash", "app")["state"], what="app running")
    assert len(mounts_under(agent.state)) == 1
    cgroup = agent.cgroup_path("crash", "app")
    agent.stop(signal.SIGKILL)
    agent.remove("crash.yaml")
    for pid in agent.procs(cgroup):
        os.kill(pid, signal.SIGKILL)
    agent.start()
    wait_for(lambda: not mounts_under(agent.state) and not list((agent.state / "pods").iterdir()),
             what="the orphan's mounts and directory gone")
