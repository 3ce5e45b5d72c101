"""The OCI config of a container: Kubernetes' command rules, env, user, capabilities, namespaces, resources."""

import pytest

from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import ResourceConfig
from nodeagent.runtime.base import ContainerSpec, Mount
from nodeagent.runtime.oci_spec import (
    DEFAULT_CAPABILITIES,
    PROPAGATION,
    ImageDefaults,
    Security,
    capabilities,
    environment,
    linux_resources,
    oci_spec,
    process_args,
    user,
)

IMAGE = ImageDefaults(entrypoint=("/ep",), cmd=("cmd-arg",), env=("PATH=/image/bin", "FROM_IMAGE=1", "X=image"),
                      working_dir="/srv", user="1000:1000")


def spec(**changes: object) -> ContainerSpec:
    base: dict[str, object] = dict(
        pod_name="p-n", pod_namespace="default", pod_uid="u1", name="c", attempt=0, image="img", command=(), args=(),
        env={}, working_dir=None, run_as_user=None, run_as_group=None, supplemental_groups=(), mounts=(),
        cgroup=CgroupPlan("container", "/kubepods/podu1/c", {}, "c", 0,
                          ResourceConfig(cpu_shares=512, cpu_quota_us=50000, cpu_period_us=100000,
                                         memory_bytes=104857600, memsw_bytes=104857600)),
        oom_score_adj=0, log_path="/l/0.log", hostname="p-n")
    base.update(changes)
    return ContainerSpec(**base)  # type: ignore[arg-type]


# The Kubernetes docs' table ("Define a command and arguments": Docker field names vs Kubernetes).
@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [((), (), ["/ep", "cmd-arg"]),
     (("/cmd",), (), ["/cmd"]),
     ((), ("a1", "a2"), ["/ep", "a1", "a2"]),
     (("/cmd",), ("a1",), ["/cmd", "a1"])],
    ids=["image-defaults", "command-replaces-entrypoint-and-cmd", "args-replace-cmd", "both"],
)
def test_command_and_args_over_entrypoint_and_cmd(command: tuple[str, ...], args: tuple[str, ...],
                                                 expected: list[str]) -> None:
    assert process_args(spec(command=command, args=args), IMAGE) == expected


def test_pod_env_overrides_image_env() -> None:
    env = environment(spec(env={"X": "pod", "Y": "2"}), IMAGE)
    assert env == ["PATH=/image/bin", "FROM_IMAGE=1", "X=pod", "HOSTNAME=p-n", "Y=2"]
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in environment(spec(), ImageDefaults())


@pytest.mark.parametrize(
    ("run_as_user", "run_as_group", "groups", "expected"),
    [(None, None, (), {"uid": 1000, "gid": 1000}),
     (0, None, (), {"uid": 0, "gid": 0}),
     (2000, 3000, (4000,), {"uid": 2000, "gid": 3000, "additionalGids": [4000]})],
    ids=["image-user", "run-as-root", "explicit"],
)
def test_user(run_as_user: int | None, run_as_group: int | None, groups: tuple[int, ...],
              expected: dict[str, object]) -> None:
    assert user(spec(run_as_user=run_as_user, run_as_group=run_as_group, supplemental_groups=groups), IMAGE) == expected


def test_capabilities() -> None:
    assert capabilities(Security()) == sorted(DEFAULT_CAPABILITIES)
    added = capabilities(Security(add=("NET_ADMIN",), drop=("MKNOD",)))
    assert "CAP_NET_ADMIN" in added and "CAP_MKNOD" not in added
    assert capabilities(Security(drop=("ALL",), add=("NET_BIND_SERVICE",))) == ["CAP_NET_BIND_SERVICE"]
    assert "CAP_SYS_ADMIN" in capabilities(Security(privileged=True))


def test_resources_v1_and_v2() -> None:
    config = spec().cgroup.resources
    assert linux_resources(config, 1) == {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "memory": {"limit": 104857600, "swap": 104857600},
    }
    v2 = ResourceConfig(cpu_shares=512, cpu_quota_us=50000, cpu_period_us=100000, memory_bytes=104857600,
                        swap_max_bytes=0, memory_oom_group=True)
    assert linux_resources(v2, 2) == {"unified": {"cpu.weight": "20", "cpu.max": "50000 100000",
                                                  "memory.max": "104857600", "memory.swap.max": "0",
                                                  "memory.oom.group": "1"}}


def test_hugepage_limits_v1_and_v2() -> None:
    config = ResourceConfig(hugepage_limits=((2 << 20, 4 << 20), (1 << 30, 0)))
    assert linux_resources(config, 1)["hugepageLimits"] == [{"pageSize": "2MB", "limit": 4 << 20},
                                                            {"pageSize": "1GB", "limit": 0}]
    assert linux_resources(config, 2) == {"unified": {"hugetlb.2MB.max": str(4 << 20), "hugetlb.1GB.max": "0"}}


def test_the_whole_spec() -> None:
    config = oci_spec(spec(mounts=(Mount("/var/lib/x", "/data", True),)), IMAGE, rootfs="/b/rootfs",
                      cgroups_path="/kubepods/podu1/c", cgroup_version=1, security=Security(read_only_root=True),
                      netns="/run/netns/pod", pod_files={"/etc/hosts": "/s/hosts"}, oom_score_adj=998)
    assert config["root"] == {"path": "/b/rootfs", "readonly": True}
    assert config["process"]["cwd"] == "/srv" and config["process"]["oomScoreAdj"] == 998
    assert {"type": "network", "path": "/run/netns/pod"} in config["linux"]["namespaces"]
    assert config["linux"]["cgroupsPath"] == "/kubepods/podu1/c"
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations[:3] == ["/proc", "/dev", "/dev/pts"] and "/etc/hosts" in destinations
    data = next(m for m in config["mounts"] if m["destination"] == "/data")
    assert data == {"destination": "/data", "type": "bind", "source": "/var/lib/x", "options": ["rbind", "ro", "rprivate"]}
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    host = oci_spec(spec(), IMAGE, rootfs="/r", cgroups_path="/c", cgroup_version=1,
                    security=Security(host_network=True), netns=None, pod_files={}, oom_score_adj=None)
    assert all(n["type"] != "network" for n in host["linux"]["namespaces"])


def test_mount_propagation_as_containerd_sets_it() -> None:
    assert PROPAGATION == {"None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}
    mounts = (Mount("/a", "/a", propagation="HostToContainer"), Mount("/b", "/b"))
    config = oci_spec(spec(mounts=mounts), ImageDefaults(), rootfs="/r", cgroups_path="/c", cgroup_version=2,
                      security=Security(), netns=None, pod_files={}, oom_score_adj=None)
    assert config["linux"]["rootfsPropagation"] == "rslave"
    options = {m["destination"]: m["options"] for m in config["mounts"]}
    assert options["/a"] == ["rbind", "rw", "rslave"] and options["/b"] == ["rbind", "rw", "rprivate"]
