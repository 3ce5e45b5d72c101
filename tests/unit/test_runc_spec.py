"""The runc runtime's pure parts: systemd's cgroupsPath form, the node's network in config.json, an image's
USER from its own passwd and group files, the cgroup mounts of a mount table."""

import os
import stat
from pathlib import Path

import pytest

from nodeagent.cgroups.detect import detect_layout
from nodeagent.errors import RuntimeStartError
from nodeagent.plan.pod import CgroupPlan
from nodeagent.runtime.base import ContainerSpec
from nodeagent.runtime.image_user import MAX_FILE_BYTES, resolve_user
from nodeagent.runtime.oci_runtime import plain_message
from nodeagent.runtime.oci_spec import ImageDefaults, Security, oci_spec, systemd_cgroups_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/nodeagent-1_2-app.scope",
      "kubepods-burstable-pod1_2.slice:nodeagent:1_2-app"),
     ("/kubepods.slice/kubepods-pod9.slice/nodeagent-9-side-car.scope", "kubepods-pod9.slice:nodeagent:9-side-car"),
     ("/nodeagent-9-c.scope", "-.slice:nodeagent:9-c")],
    ids=["burstable", "guaranteed, a dash in the container name", "at the root"],
)
def test_systemd_cgroups_path_names_the_planned_scope(path: str, expected: str) -> None:
    assert systemd_cgroups_path(path) == expected
    parent, prefix, name = expected.split(":")
    assert path.endswith(f"/{prefix}-{name}.scope")  # runc's unit name: <prefix>-<name>.scope
    assert parent == "-.slice" or f"/{parent}/" in path


def test_systemd_cgroups_path_refuses_what_is_not_a_scope() -> None:
    with pytest.raises(ValueError, match="not a systemd scope path"):
        systemd_cgroups_path("/kubepods/burstable/pod1/c")


def spec(**changes: object) -> ContainerSpec:
    base: dict[str, object] = dict(
        pod_name="p-n", pod_namespace="default", pod_uid="u1", name="c", attempt=0, image="img", command=("sh",),
        args=(), env={}, working_dir=None, run_as_user=None, run_as_group=None, supplemental_groups=(), mounts=(),
        cgroup=CgroupPlan("container", "/kubepods/podu1/c", {}, "c", 0), oom_score_adj=None, log_path="/l/0.log",
        hostname="p-n")
    base.update(changes)
    return ContainerSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("host_network", "namespaces", "hostname"),
                         [(False, ["pid", "ipc", "uts", "mount", "network"], "p-n"),
                          (True, ["pid", "ipc", "mount"], None)],
                         ids=["pod network", "host network"])
def test_the_node_network_keeps_the_node_uts_namespace(host_network: bool, namespaces: list[str],
                                                       hostname: str | None) -> None:
    config = oci_spec(spec(), ImageDefaults(), rootfs="/r", cgroups_path="/c", cgroup_version=1,
                      security=Security(host_network=host_network), netns=None if host_network else "/run/netns/p",
                      pod_files={}, oom_score_adj=None)
    assert [n["type"] for n in config["linux"]["namespaces"]] == namespaces
    assert config.get("hostname") == hostname


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnginx:x:101:102::/:/bin/false\n"
                                         "broken line\napp:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nnginx:x:102:\nstaff:x:50:app\n")
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [("", ""), ("nginx", "101:102"), ("1000", "1000:1000"), ("4242", "4242:0"), ("app:staff", "1000:50"),
     ("nginx:7", "101:7"), ("5:6", "5:6")],
    ids=["unset", "name", "uid with passwd entry", "uid without", "name:group", "name:gid", "uid:gid"],
)
def test_an_image_user_is_resolved_in_the_image(rootfs: Path, user: str, expected: str) -> None:
    assert resolve_user(str(rootfs), user) == expected


@pytest.mark.parametrize(("user", "message"),
                         [("nobody", "unable to find user nobody: no matching entries in passwd file"),
                          ("app:wheel", "unable to find group wheel: no matching entries in group file")])
def test_an_unknown_name_is_a_create_container_error(rootfs: Path, user: str, message: str) -> None:
    with pytest.raises(RuntimeStartError) as raised:
        resolve_user(str(rootfs), user)
    assert (raised.value.reason, raised.value.message) == ("CreateContainerError", message)


def test_a_symbolic_link_out_of_the_image_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("secret:x:7:7::/:/bin/sh\n")
    linked_file, linked_dir = tmp_path / "a", tmp_path / "b"
    (linked_file / "etc").mkdir(parents=True)
    (linked_file / "etc/passwd").symlink_to(outside / "passwd")
    linked_dir.mkdir()
    (linked_dir / "etc").symlink_to(outside)
    for root in (linked_file, linked_dir):
        with pytest.raises(RuntimeStartError):
            resolve_user(str(root), "secret")



def test_a_link_to_a_node_device_names_the_image_own_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/dev/zero")  # resolved inside the root: the image has no /dev/zero
    with pytest.raises(RuntimeStartError, match="unable to find user app"):
        resolve_user(str(tmp_path), "app")
    (tmp_path / "etc/group").symlink_to("../../../etc/real-group")  # `..` stops at the root
    (tmp_path / "etc/real-group").write_text("staff:x:50:\n")
    assert resolve_user(str(tmp_path), "0:staff") == "0:50"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/passwd")  # a blocking open would wait for a writer forever
    with pytest.raises(RuntimeStartError, match="cannot read /etc/passwd in the image: not a regular file"):
        resolve_user(str(tmp_path), "app")
    os.unlink(tmp_path / "etc/passwd")
    os.mknod(tmp_path / "etc/passwd", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    with pytest.raises(RuntimeStartError, match="cannot read /etc/passwd in the image: not a regular file"):
        resolve_user(str(tmp_path), "app")


def test_a_huge_passwd_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with open(tmp_path / "etc/passwd", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(RuntimeStartError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        resolve_user(str(tmp_path), "app")


MOUNTINFO = """\
25 1 0:23 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:7 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw shared:8 - cgroup cgroup rw,memory
"""


def test_cgroup_mounts_are_every_v1_and_v2_mount() -> None:
    assert list(detect_layout(MOUNTINFO).mounts) == ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd",
                                        "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"]


@pytest.mark.parametrize(
    ("stderr", "message"),
    [('time="2026-11-22T01:59:25Z" level=error msg="runc create failed: exec: \\"x\\": not found"\n',
      'runc create failed: exec: "x": not found'),
     ("Error: container not found\n", "Error: container not found"),
     ('level=warning msg="a"\nlevel=error msg="b"', "a; b")],
    ids=["runc's logrus record", "crun's plain text", "two records"],
)
def test_runtime_errors_are_plain_text(stderr: str, message: str) -> None:
    assert plain_message(stderr) == message
