"""V2Hierarchy against a temporary directory shaped like a cgroup2 mount.

A plain directory is not cgroupfs: mkdir creates no interface files, writes replace a file's content
instead of being interpreted, and cgroup.subtree_control does not read back as "cpu memory pids"
after "+cpu +memory +pids" is written. V2Hierarchy reads each level's cgroup.controllers and
cgroup.subtree_control and writes without O_CREAT, so it only works where those files exist. The
fixture therefore lays out every level the way the kernel would show it once the controllers are
enabled (cgroup.controllers, an empty cgroup.subtree_control, the controllers' interface files), and
the tests check what V2Hierarchy wrote into them. What needs the kernel (mkdir creating the files,
the controllers taking effect) is left to the integration tests on real cgroups.
"""

import errno
from pathlib import Path

import pytest

from nodeagent.cgroups.fs2 import WANTED_CONTROLLERS, V2Hierarchy, check_v2
from nodeagent.errors import CgroupError, CgroupWriteError
from nodeagent.plan.pod import CgroupPlan, plan_pod
from nodeagent.plan.settings import NodeInfo, PlanSettings
from tests.conftest import example, load_pod

NODE = NodeInfo(cpu_millis=4000, memory_bytes=16 << 30)
ENABLED = "+cpu +memory +pids"
INTERFACE_FILES = {
    "cpu": ("cpu.weight", "cpu.max", "cpu.stat"),
    "memory": ("memory.max", "memory.swap.max", "memory.oom.group", "memory.current", "memory.stat",
               "memory.events", "memory.min", "memory.high"),
    "pids": ("pids.max", "pids.current"),
}


def kernel_level(directory: Path, controllers: str = "cpu memory pids") -> Path:
    """A cgroup directory as the kernel shows it: its core files and its controllers' interface files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cgroup.controllers").write_text(controllers + "\n")
    (directory / "cgroup.subtree_control").write_text("")
    (directory / "cgroup.procs").write_text("")
    for controller in controllers.split():
        for name in INTERFACE_FILES.get(controller, ()):
            (directory / name).write_text("")
    return directory


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    """The root of a cgroup2 mount: every controller available, none enabled for children yet."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids io\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("")
    return root


def lay_out(mount: Path, path: str, controllers: str = "cpu memory pids") -> None:
    """Every level of `path` below the mount, as the kernel would show it."""
    current = mount
    for part in [p for p in path.split("/") if p]:
        current = kernel_level(current / part, controllers)


def subtree(directory: Path) -> str:
    return (directory / "cgroup.subtree_control").read_text()


def guaranteed_plan() -> tuple[CgroupPlan, CgroupPlan]:
    plan = plan_pod(load_pod(example("qos-guaranteed.yaml")), NODE, PlanSettings(cgroup_version=2))
    assert plan.pod is not None
    return plan.pod, plan.container("qos-demo-ctr")


def test_the_plan_under_test() -> None:
    pod, container = guaranteed_plan()
    assert pod.path.startswith("/kubepods/pod")
    assert pod.files == {"cpu.weight": "28", "cpu.max": "70000 100000", "memory.max": "209715200"}
    assert container.path == pod.path + "/qos-demo-ctr"
    assert container.files == {"cpu.weight": "28", "cpu.max": "70000 100000", "memory.max": "209715200",
                               "memory.swap.max": "0", "memory.oom.group": "1"}


def test_apply_enables_the_controllers_down_the_path_and_writes_the_plan(mount: Path) -> None:
    pod, container = guaranteed_plan()
    lay_out(mount, container.path)
    hierarchy = V2Hierarchy(str(mount))

    hierarchy.apply(pod.path, pod.files)

    pod_dir = mount / pod.path.lstrip("/")
    assert subtree(mount) == ENABLED  # io is available but not wanted
    assert subtree(mount / "kubepods") == ENABLED
    assert subtree(pod_dir) == ""  # the leaf of this call: nothing below it yet
    for name, value in pod.files.items():
        assert (pod_dir / name).read_text() == value, name

    hierarchy.apply(container.path, container.files)

    container_dir = mount / container.path.lstrip("/")
    assert subtree(pod_dir) == ENABLED  # now the pod level has a child
    assert subtree(container_dir) == ""
    for name, value in container.files.items():
        assert (container_dir / name).read_text() == value, name
    assert (container_dir / "memory.min").read_text() == ""  # not in the plan: never written


def test_the_values_are_written_exactly_as_planned(mount: Path) -> None:
    _, container = guaranteed_plan()
    lay_out(mount, container.path)
    directory = mount / container.path.lstrip("/")
    (directory / "memory.max").write_text("max\n")  # the kernel's previous value, replaced
    V2Hierarchy(str(mount)).apply(container.path, container.files)
    assert (directory / "memory.max").read_text() == "209715200"
    assert (directory / "cpu.max").read_text() == "70000 100000"


@pytest.mark.parametrize(
    ("available", "enabled", "written"),
    [
        ("cpu memory pids io", "", "+cpu +memory +pids"),
        ("cpu memory pids io", "cpu", "+memory +pids"),
        ("cpu memory pids io", "memory io", "+cpu +pids"),
        ("cpu memory", "", "+cpu +memory"),
        ("memory pids", "memory", "+pids"),
        ("io", "", None),
        ("cpu memory pids", "cpu memory pids", None),
        ("cpuset cpu io memory hugetlb pids rdma misc", "cpuset io", "+cpu +memory +pids +hugetlb"),
    ],
    ids=["none-enabled", "cpu-enabled", "memory-and-io-enabled", "no-pids-available", "only-pids-missing",
         "nothing-wanted-available", "all-enabled-no-write", "kernel-order-and-extra-controllers"],
)
def test_only_wanted_available_not_yet_enabled_controllers_are_written(
        mount: Path, available: str, enabled: str, written: str | None) -> None:
    (mount / "cgroup.controllers").write_text(available + "\n")
    (mount / "cgroup.subtree_control").write_text(enabled + "\n" if enabled else "")
    before = subtree(mount)
    kernel_level(mount / "leaf", "")
    V2Hierarchy(str(mount)).create("/leaf")
    assert subtree(mount) == (written if written is not None else before)


def test_wanted_controllers_are_cpu_memory_pids_hugetlb_in_that_order() -> None:
    assert WANTED_CONTROLLERS == ("cpu", "memory", "pids", "hugetlb")


def test_a_level_already_enabled_is_not_written_again(mount: Path) -> None:
    # as the kernel shows it once enabled: names without '+'
    lay_out(mount, "/kubepods/pod1/c")
    (mount / "cgroup.subtree_control").write_text("cpu memory pids\n")
    (mount / "kubepods" / "cgroup.subtree_control").write_text("cpu memory pids\n")
    V2Hierarchy(str(mount)).create("/kubepods/pod1/c")
    assert subtree(mount) == "cpu memory pids\n"
    assert subtree(mount / "kubepods") == "cpu memory pids\n"
    assert subtree(mount / "kubepods" / "pod1") == ENABLED


def test_a_level_offering_fewer_controllers_gets_only_those(mount: Path) -> None:
    lay_out(mount, "/kubepods", "cpu memory pids")
    kernel_level(mount / "kubepods" / "pod1", "memory")
    kernel_level(mount / "kubepods" / "pod1" / "c", "memory")
    V2Hierarchy(str(mount)).create("/kubepods/pod1/c")
    assert subtree(mount / "kubepods") == ENABLED
    assert subtree(mount / "kubepods" / "pod1") == "+memory"


def test_without_the_kernel_a_new_level_has_no_cgroup_controllers(mount: Path) -> None:
    """mkdir in a plain directory creates none of the files cgroupfs would: create() cannot go on."""
    with pytest.raises(CgroupError, match=r"kubepods/cgroup\.controllers"):
        V2Hierarchy(str(mount)).create("/kubepods/pod1")
    assert (mount / "kubepods").is_dir()  # created before the failing read
    assert not (mount / "kubepods" / "pod1").exists()
    assert subtree(mount) == ENABLED


def test_writing_a_file_the_kernel_does_not_offer_fails_with_the_file_named(mount: Path) -> None:
    lay_out(mount, "/kubepods/pod1", "cpu")  # no memory controller: no memory.max
    with pytest.raises(CgroupWriteError) as caught:
        V2Hierarchy(str(mount)).apply("/kubepods/pod1", {"cpu.weight": "28", "memory.max": "1024"})
    error = caught.value
    assert (error.path, error.file, error.value, error.errno) == (
        str(mount / "kubepods" / "pod1"), "memory.max", "1024", errno.ENOENT)
    assert "memory.max" in str(error) and "'1024'" in str(error)
    assert not (mount / "kubepods" / "pod1" / "memory.max").exists()  # no file was made up
    assert (mount / "kubepods" / "pod1" / "cpu.weight").read_text() == "28"  # written in order, before it


# -- reading usage ------------------------------------------------------------------------------------

MEMORY_EVENTS = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 1\n"
MEMORY_STAT = ("anon 52428800\nfile 20971520\nkernel 1048576\nactive_anon 0\ninactive_anon 52428800\n"
               "active_file 16777216\ninactive_file 4194304\nunevictable 0\n")
CPU_STAT = ("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 10\nnr_throttled 2\n"
            "throttled_usec 5000\n")


@pytest.fixture
def leaf(mount: Path) -> Path:
    lay_out(mount, "/kubepods/pod1/c")
    return mount / "kubepods" / "pod1" / "c"


@pytest.mark.parametrize(
    ("events", "kills"),
    [(MEMORY_EVENTS, 2), ("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", 0), ("low 0\nhigh 0\n", 0), ("", 0),
     ("oom_kill 7", 7)],
    ids=["counted", "none", "no-oom-kill-line", "empty", "no-trailing-newline"],
)
def test_oom_kills_from_memory_events(mount: Path, leaf: Path, events: str, kills: int) -> None:
    (leaf / "memory.events").write_text(events)
    assert V2Hierarchy(str(mount)).oom_kills("/kubepods/pod1/c") == kills


@pytest.mark.parametrize(
    ("current", "stat", "working_set"),
    [("104857600\n", MEMORY_STAT, 104857600 - 4194304),
     ("1000\n", "inactive_file 5000\n", 0),
     ("4096\n", "anon 4096\n", 4096),
     ("0\n", MEMORY_STAT, 0)],
    ids=["usage-minus-inactive-file", "inactive-above-usage-is-zero", "no-inactive-file", "empty-cgroup"],
)
def test_memory_working_set(mount: Path, leaf: Path, current: str, stat: str, working_set: int) -> None:
    (leaf / "memory.current").write_text(current)
    (leaf / "memory.stat").write_text(stat)
    assert V2Hierarchy(str(mount)).memory_working_set("/kubepods/pod1/c") == working_set


@pytest.mark.parametrize(
    ("stat", "nanoseconds"),
    [(CPU_STAT, 1234567 * 1000), ("usage_usec 0\n", 0), ("user_usec 5\n", 0)],
    ids=["usage-usec-in-ns", "zero", "no-usage-line"],
)
def test_cpu_usage_from_cpu_stat(mount: Path, leaf: Path, stat: str, nanoseconds: int) -> None:
    (leaf / "cpu.stat").write_text(stat)
    assert V2Hierarchy(str(mount)).cpu_usage_ns("/kubepods/pod1/c") == nanoseconds


def test_reading_usage_of_a_missing_cgroup_is_a_cgroup_error(mount: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    for read in (hierarchy.oom_kills, hierarchy.memory_working_set, hierarchy.cpu_usage_ns):
        with pytest.raises(CgroupError, match="gone"):
            read("/gone")


# -- the rest of the surface -------------------------------------------------------------------------

def test_directory_joins_below_the_mount(mount: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    assert hierarchy.directory("/kubepods/pod1") == str(mount / "kubepods" / "pod1")
    assert hierarchy.directory("kubepods") == str(mount / "kubepods")
    assert hierarchy.directory("/") == str(mount) + "/"
    assert hierarchy.version == 2


def test_attach_writes_the_pid_to_cgroup_procs_and_procs_reads_it(mount: Path, leaf: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    hierarchy.attach("/kubepods/pod1/c", 4242)
    assert (leaf / "cgroup.procs").read_text() == "4242"
    (leaf / "cgroup.procs").write_text("12\n34\n\n")
    assert hierarchy.procs("/kubepods/pod1/c") == [12, 34]
    assert hierarchy.procs("/missing") == []


def test_exists(mount: Path, leaf: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    assert hierarchy.exists("/kubepods/pod1/c")
    assert not hierarchy.exists("/kubepods/pod2")
    (mount / "file").write_text("")
    assert not hierarchy.exists("/file")


def test_kill_uses_cgroup_kill_where_the_kernel_has_it(mount: Path, leaf: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    assert hierarchy.kill("/kubepods/pod1/c") is False  # before Linux 5.14: no cgroup.kill
    (leaf / "cgroup.kill").write_text("")
    assert hierarchy.kill("/kubepods/pod1/c") is True
    assert (leaf / "cgroup.kill").read_text() == "1"


def test_children_are_the_subdirectories_sorted(mount: Path, leaf: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    kernel_level(mount / "kubepods" / "pod0")
    assert hierarchy.children("/kubepods") == ["pod0", "pod1"]  # files such as cpu.max are not children
    assert hierarchy.children("/kubepods/pod1/c") == []
    assert hierarchy.children("/missing") == []


def test_remove_an_empty_or_missing_cgroup(mount: Path) -> None:
    hierarchy = V2Hierarchy(str(mount))
    (mount / "empty").mkdir()
    hierarchy.remove("/empty")
    assert not (mount / "empty").exists()
    hierarchy.remove("/empty")  # gone already is fine


def test_check_v2(mount: Path, tmp_path: Path) -> None:
    check_v2(str(mount))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(CgroupError, match="is not a cgroup v2 hierarchy"):
        check_v2(str(plain))
