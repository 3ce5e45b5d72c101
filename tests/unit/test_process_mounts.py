"""The process runtime's mount plan (what the agent's prepared mount namespace holds) and the launcher's
command line that joins it."""

from dataclasses import replace

import pytest

from nodeagent.runtime.base import ContainerSpec, Mount
from nodeagent.runtime.mountns import Bind, MountNamespace, MountPlan
from nodeagent.runtime.process import launcher_argv, mount_plan
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
    with open("/dev/null") as handle:
        namespace = MountNamespace(handle.fileno())
        argv = launcher_argv(spec, "/b", ["sleep", "1"], namespace, ["setpriv", "--"])
    assert argv[:4] == ["nsenter", f"--mount={namespace.path}", "--net=/run/netns/p", "--"]
    assert argv[-7:] == ["/b/run", "/b/start", "/w", "setpriv", "--", "sleep", "1"]
    assert launcher_argv(SPEC, "/b", ["sleep", "1"], None, [])[0] == "/bin/sh"
