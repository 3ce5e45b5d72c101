"""The process runtime's mount plan (what the agent's prepared mount namespace holds) and the launcher's
command line that joins it."""

import os
from dataclasses import replace

import pytest

from nodeagent.runtime.base import ContainerSpec, Mount
from nodeagent.runtime.mountns import Bind, MountNamespace, MountPlan
from nodeagent.runtime.process import exact_env, host_tool, launcher_argv, mount_plan
from tests.unit.test_security import SPEC

VOLUME = Mount(host_path="/var/data", container_path="/data", read_only=True)


@pytest.mark.parametrize(("spec", "plan"), [
    (SPEC, None),
    (replace(SPEC, mounts=(VOLUME,)), MountPlan((Bind("/var/data", "/data", True),), False)),
    (replace(SPEC, read_only_root=True), MountPlan((), True)),
    (replace(SPEC, netns="/run/netns/p", hosts_file="h", resolv_conf="r"),
     MountPlan((Bind("/b/etc_hosts", "/etc/hosts", False), Bind("/b/etc_resolv.conf", "/etc/resolv.conf", False)),
               False, netns="/run/netns/p", sysfs="/b/sys")),
], ids=["host network, no volume: the node's namespace", "a read-only volume", "a read-only root",
        "own network: its /sys and /etc files"])
def test_mount_plan(spec: ContainerSpec, plan: MountPlan | None) -> None:
    assert mount_plan(spec, "/b") == plan


def test_the_launcher_joins_the_prepared_namespace_and_the_pods_network_before_the_go() -> None:
    spec = replace(SPEC, netns="/run/netns/p", working_dir="/w")
    entry = ["/usr/bin/env", "-i", "A.B=1", "setpriv", "--", "sleep", "1"]
    with open("/dev/null") as handle:
        namespace = MountNamespace(handle.fileno())
        argv = launcher_argv(spec, "/b", namespace, entry)
    assert argv[:4] == [host_tool("nsenter"), f"--mount={namespace.path}", "--net=/run/netns/p", "--"]
    assert argv[-10:] == ["/b/run", "/b/start", "/w", *entry]
    assert launcher_argv(SPEC, "/b", None, entry)[0] == "/bin/sh"


def test_the_tools_on_a_containers_way_in_are_the_nodes_whatever_its_path() -> None:
    """Looked up in the agent's PATH, never the container's (a manifest set PATH=/nowhere: nsenter, env and
    setpriv were not found and the container never started)."""
    assert host_tool("nsenter").startswith("/") and os.access(host_tool("nsenter"), os.X_OK)
    assert exact_env({"A.B": "1", "PATH": "/nowhere"}) == [host_tool("env"), "-i", "A.B=1", "PATH=/nowhere"]
