"""subPath through symbolic links with the runc runtime (issue 12 item 1): the init container plants
`ln -s / /shared/escape` in the emptyDir; the victim's `subPath: escape` would be the node's / read-write
in the container if runc were handed <volume>/escape. A subPath inside the volume still works."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.images import Pushed, busybox_layer, push_image
from tests.integration.registry import Registry, registry  # noqa: F401
from tests.integration.test_runc import RuncAgent
from tests.security.subpaths import REFUSED, escape_pod, mounts_under, waiting


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> Pushed:  # noqa: F811
    return push_image(registry, "security/busybox", "1.0", [busybox_layer()])


@pytest.fixture(scope="module")
def runc_agent(tmp_path_factory: pytest.TempPathFactory, registry: Registry,  # noqa: F811
               busybox: Pushed) -> Iterator[AgentHarness]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    agent = RuncAgent(tmp_path_factory.mktemp("subpath-runc"), [registry])
    try:
        agent.harness.start()
        yield agent.harness
    finally:
        if os.environ.get("NODEAGENT_TEST_LOG"):
            print(agent.harness.agent_log())
        agent.clean_up()


def test_runc_refuses_a_subpath_through_a_symlink_to_the_nodes_root(runc_agent: AgentHarness, busybox: Pushed,
                                                                    tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("a file of the node\n")
    runc_agent.write("escape.yaml", escape_pod("escape", Path("/shared"), Path("/mnt/escape"), outside,
                                               busybox.reference))
    status = wait_for(lambda: waiting(runc_agent, "escape", "victim"), timeout=30, what="CreateContainerConfigError")
    assert status["message"] == REFUSED
    init = runc_agent.pod("escape")["status"]["initContainerStatuses"][0]["state"]
    assert init["terminated"]["exitCode"] == 0  # the link was planted
    failed = [e for e in runc_agent.events() if e["reason"] == "Failed"
              and e["involvedObject"]["name"] == f"escape-{NODE}"]
    assert [(e["type"], e["message"]) for e in failed] == [("Warning", f"Error: {REFUSED}")]
    assert runc_agent.container_status("escape", "victim")["restartCount"] == 0
    assert not (outside / "written").exists()
    assert mounts_under(runc_agent.state / "pods") == []
    runc_agent.remove("escape.yaml")
    wait_for(lambda: not any(p["metadata"]["name"] == f"escape-{NODE}" for p in runc_agent.pods()),
             what="pod gone")


def test_runc_mounts_a_subpath_inside_the_volume(runc_agent: AgentHarness, busybox: Pushed) -> None:
    runc_agent.write("inside.yaml", f"""
kind: Pod
metadata: {{name: inside}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: fill
    image: {busybox.reference}
    command: [sh, -c, "mkdir /shared/real && echo inside > /shared/real/file && ln -s real /shared/link"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: app
    image: {busybox.reference}
    command: [sh, -c, "cat /linked/file; echo written > /made/out; exec sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /linked, subPath: link, readOnly: true}}
    - {{name: shared, mountPath: /made, subPath: made/here}}
  volumes: [{{name: shared, emptyDir: {{}}}}]
""")
    wait_for(lambda: "running" in runc_agent.container_status("inside", "app")["state"], timeout=30,
             what="app running")
    uid = runc_agent.pod("inside")["metadata"]["uid"]
    pod_dir = runc_agent.state / "pods" / uid
    volume = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "shared"
    assert wait_for(lambda: runc_agent.cli("logs", "inside", "-c", "app").stdout, what="logs") == "inside\n"
    assert wait_for(lambda: (volume / "made/here/out").exists() and (volume / "made/here/out").read_text(),
                    what="out") == "written\n"
    subpaths = pod_dir / "volume-subpaths"
    assert sorted(mounts_under(subpaths)) == [str(subpaths / "shared/app/0"), str(subpaths / "shared/app/1")]
    runc_agent.remove("inside.yaml")
    wait_for(lambda: not pod_dir.exists(), what="the pod's directory gone")
    assert mounts_under(runc_agent.state / "pods") == []
