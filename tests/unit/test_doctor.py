"""`nodeagent doctor`: each check on temporary files and directories, the command's output, and this machine."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from nodeagent.cgroups.detect import CgroupLayout, detect_layout
from nodeagent.cli.doctor import doctor
from nodeagent.doctor import (
    Check,
    check_cgroups,
    check_config,
    check_driver,
    check_ip_forward,
    check_manifests,
    check_quarantined_state,
    check_root,
    check_runtime,
    check_seccomp_profile,
    check_socket,
    check_state_dir,
    check_swap,
    check_swap_accounting,
    render_check,
)

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
SWAPFILE_1GIB = "/swapfile                               file\t\t1048572\t\t0\t\t-2\n"
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files owned by root, chown to another uid")


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def executables(directory: Path, *names: str) -> str:
    directory.mkdir()
    for name in names:
        write(directory / name, "#!/bin/sh\n", 0o755)
    return str(directory)


# -- root, cgroups, driver ----------------------------------------------------------------------------


def test_root() -> None:
    assert check_root(0) == Check("root", "ok", "running as root (euid 0)")
    not_root = check_root(1000)
    assert (not_root.status, not_root.fix) == ("fail", "run nodeagent (and this check) as root")
    assert "euid 1000" in not_root.message


def test_cgroups_v1_hybrid() -> None:
    check = check_cgroups(detect_layout(HYBRID_MOUNTINFO))
    assert render_check(check) == ("ok    cgroups: v1 (hybrid): memory, cpu, cpuacct, pids mounted "
                                   "(cgroup2 at /sys/fs/cgroup/unified is not used)")


def test_cgroups_v1_without_pids_fails() -> None:
    mountinfo = "\n".join(line for line in HYBRID_MOUNTINFO.splitlines() if "pids" not in line)
    check = check_cgroups(detect_layout(mountinfo))
    assert (check.status, check.message) == ("fail", "v1 (hybrid): pids not mounted")
    assert check.fix is not None and "mount -t cgroup -o pids" in check.fix


@pytest.mark.parametrize(("controllers", "status", "message"), [
    ("cpuset cpu io memory hugetlb pids rdma misc", "ok", "v2 at {root}: cpu, memory, pids available"),
    ("cpuset io memory", "fail", "v2: cpu, pids missing from {root}/cgroup.controllers"),
], ids=["all", "cpu-and-pids-missing"])
def test_cgroups_v2_controllers(tmp_path: Path, controllers: str, status: str, message: str) -> None:
    write(tmp_path / "cgroup.controllers", controllers + "\n")
    check = check_cgroups(CgroupLayout(version=2, hybrid=False, v2_mount=str(tmp_path)))
    assert (check.status, check.message) == (status, message.format(root=tmp_path))


def test_cgroups_v2_unreadable_root_fails(tmp_path: Path) -> None:
    check = check_cgroups(CgroupLayout(version=2, hybrid=False, v2_mount=str(tmp_path)))
    assert check.status == "fail"
    assert "cannot read" in check.message


def test_swap_accounting(tmp_path: Path) -> None:
    missing = check_swap_accounting(str(tmp_path))
    assert missing.status == "warn"
    assert "swap limits cannot be enforced" in missing.message
    assert missing.fix == "boot with swapaccount=1 on the kernel command line"
    write(tmp_path / "memory.memsw.limit_in_bytes", "9223372036854771712\n")
    assert check_swap_accounting(str(tmp_path)).status == "ok"


def test_driver() -> None:
    assert render_check(check_driver("cgroupfs", "set by cgroupDriver in the configuration",
                                     systemd_reachable=False)) == (
        "ok    cgroup driver: cgroupfs (set by cgroupDriver in the configuration)")
    systemd = check_driver("systemd", "cgroupDriver is unset and systemd is PID 1", systemd_reachable=True)
    assert render_check(systemd) == "ok    cgroup driver: systemd (cgroupDriver is unset and systemd is PID 1)"
    absent = check_driver("systemd", "set by cgroupDriver in the configuration", systemd_reachable=False)
    assert render_check(absent) == (
        "fail  cgroup driver: systemd (set by cgroupDriver in the configuration), but systemd is not PID 1 here -> "
        "set cgroupDriver: cgroupfs (or nodeagent.systemdBusAddress)")


# -- swap ---------------------------------------------------------------------------------------------


def test_swap_on_with_fail_swap_on_fails(tmp_path: Path) -> None:
    swaps = write(tmp_path / "swaps", SWAPS_HEADER + SWAPFILE_1GIB)
    check = check_swap(str(swaps), fail_swap_on=True, swap_behavior="NoSwap")
    assert render_check(check) == ("fail  swap: swap is on (/swapfile, 1.0 GiB) and failSwapOn is true -> turn swap "
                                   "off (swapoff -a) or set failSwapOn: false")


def test_swap_on_without_fail_swap_on_is_ok(tmp_path: Path) -> None:
    swaps = write(tmp_path / "swaps", SWAPS_HEADER + SWAPFILE_1GIB + "/dev/sdb2 partition\t524284\t0\t-3\n")
    check = check_swap(str(swaps), fail_swap_on=False, swap_behavior="LimitedSwap")
    assert check == Check("swap", "ok", "swap is on (/swapfile, 1.0 GiB; /dev/sdb2, 512.0 MiB) and failSwapOn is "
                          "false: pods get swapBehavior LimitedSwap")


def test_swap_off(tmp_path: Path) -> None:
    swaps = write(tmp_path / "swaps", SWAPS_HEADER)
    assert check_swap(str(swaps), fail_swap_on=True, swap_behavior="NoSwap") == Check("swap", "ok", "swap is off")


def test_swap_unreadable_warns(tmp_path: Path) -> None:
    check = check_swap(str(tmp_path / "absent"), fail_swap_on=True, swap_behavior="NoSwap")
    assert check.status == "warn"


# -- manifests ----------------------------------------------------------------------------------------


@needs_root
def test_manifest_dir_owned_by_root_is_ok(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    write(manifests / "web.yaml", "kind: Pod\n")
    write(manifests / ".hidden.swp", "", 0o666)  # ignored by the agent, so not looked at
    check = check_manifests(str(manifests))
    assert check == Check("manifests", "ok", f"{manifests}: a directory of 1 file, owned by root, not writable by "
                          "group/other")


@needs_root
def test_manifest_file_is_ok(tmp_path: Path) -> None:
    manifest = write(tmp_path / "pod.yaml", "kind: Pod\n")
    assert check_manifests(str(manifest)).status == "ok"


def test_world_writable_manifest_dir_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    manifests.chmod(0o777)
    check = check_manifests(str(manifests))
    assert render_check(check) == (f"fail  manifests: {manifests} is writable by group/other (mode 0777): anyone who "
                                   f"can write there runs code as root -> chmod go-w {manifests}")


@needs_root
def test_group_writable_manifest_in_the_dir_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    pod = write(manifests / "pod.yaml", "kind: Pod\n", 0o664)
    check = check_manifests(str(manifests))
    assert (check.status, check.fix) == ("fail", f"chmod go-w {pod}")


@needs_root
def test_manifest_dir_owned_by_another_user_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    os.chown(manifests, 65534, 65534)
    check = check_manifests(str(manifests))
    assert check.status == "fail"
    assert check.message == f"{manifests} is owned by uid 65534, not root: that user can run code as root"
    assert check.fix == f"chown root:root {manifests}"


@needs_root
def test_symlinked_manifest_whose_target_another_user_can_write_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    target = write(elsewhere / "pod.yaml", "kind: Pod\n", 0o644)
    os.chown(target, 65534, 65534)
    (manifests / "pod.yaml").symlink_to(target)
    check = check_manifests(str(manifests))
    assert check.status == "fail"
    assert check.message == (f"{target} is owned by uid 65534, not root: that user can run code as root "
                             f"(reached from {manifests / 'pod.yaml'})")
    assert check.fix == f"chown root:root {target}"


@needs_root
def test_symlinked_manifest_in_a_directory_another_user_owns_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)  # its owner can replace the file, whatever the file's own mode
    (manifests / "pod.yaml").symlink_to(write(theirs / "pod.yaml", "kind: Pod\n", 0o644))
    check = check_manifests(str(manifests))
    assert (check.status, check.fix) == ("fail", f"chown root:root {theirs}")


@needs_root
def test_symlink_on_the_way_in_a_group_writable_directory_fails(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    hop = tmp_path / "hop"
    hop.mkdir()
    hop.chmod(0o775)  # whoever is in its group can point the link elsewhere
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    (hop / "link.yaml").symlink_to(write(real / "pod.yaml", "kind: Pod\n"))
    (manifests / "pod.yaml").symlink_to(hop / "link.yaml")
    check = check_manifests(str(manifests))
    assert (check.status, check.fix) == ("fail", f"chmod go-w {hop}")


@needs_root
def test_symlinked_manifest_dir_is_judged_by_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    write(real / "web.yaml", "kind: Pod\n")
    link = tmp_path / "manifests"
    link.symlink_to(real)
    assert check_manifests(str(link)).status == "ok"  # the link's own mode (0777) means nothing
    os.chown(real, 65534, 65534)
    check = check_manifests(str(link))
    assert (check.status, check.fix) == ("fail", f"chown root:root {real}")


@needs_root
def test_a_directory_above_the_manifests_that_others_can_write_fails(tmp_path: Path) -> None:
    above = tmp_path / "above"
    above.mkdir()
    above.chmod(0o777)  # anyone can rename manifests/ away and put their own in its place
    manifests = above / "manifests"
    manifests.mkdir(mode=0o755)
    check = check_manifests(str(manifests))
    assert (check.status, check.fix) == ("fail", f"chmod go-w {above}")
    above.chmod(0o1777)  # sticky, as /tmp: only root, manifests/'s owner, may rename it
    assert check_manifests(str(manifests)).status == "ok"


def test_missing_manifest_dir_warns(tmp_path: Path) -> None:
    check = check_manifests(str(tmp_path / "manifests"))
    assert (check.status, check.fix) == ("warn", f"mkdir -p -m 0755 {tmp_path / 'manifests'}")


def test_manifest_path_that_is_a_fifo_fails(tmp_path: Path) -> None:
    fifo = tmp_path / "manifests"
    os.mkfifo(fifo, 0o600)
    check = check_manifests(str(fifo))
    assert (check.status, check.message) == ("fail", f"{fifo} is neither a directory nor a file")


# -- runtime ------------------------------------------------------------------------------------------


def test_process_runtime_tools_found(tmp_path: Path) -> None:
    path = executables(tmp_path / "bin", "conmon", "mount", "setpriv", "nsenter")
    check = check_runtime("process", search_path=path, conmon_elsewhere=())
    assert check.status == "ok"
    assert check.message == "process: " + ", ".join(f"{path}/{tool}" for tool in ("conmon", "mount", "setpriv",
                                                                                  "nsenter"))


def test_missing_conmon_fails(tmp_path: Path) -> None:
    path = executables(tmp_path / "bin", "mount", "setpriv", "nsenter")
    check = check_runtime("process", search_path=path, conmon_elsewhere=())
    assert render_check(check) == "fail  runtime: process: conmon not found -> apt-get install conmon"


def test_conmon_outside_path_is_found_where_the_runtime_looks(tmp_path: Path) -> None:
    path = executables(tmp_path / "bin", "mount", "setpriv", "nsenter")
    elsewhere = executables(tmp_path / "libexec", "conmon")
    check = check_runtime("process", search_path=path, conmon_elsewhere=[f"{elsewhere}/conmon"])
    assert check.status == "ok"


def test_missing_util_linux_names_the_package_once(tmp_path: Path) -> None:
    path = executables(tmp_path / "bin", "conmon", "mount")
    check = check_runtime("process", search_path=path, conmon_elsewhere=())
    assert (check.message, check.fix) == ("process: setpriv, nsenter not found", "apt-get install util-linux")


def test_the_runc_runtime_needs_conmon_and_its_runc_or_crun(tmp_path: Path) -> None:
    path = executables(tmp_path / "bin", "conmon")
    assert render_check(check_runtime("runc", search_path=path, runc_path="crun", conmon_elsewhere=())) == (
        "fail  runtime: runc: crun not found -> apt-get install crun")
    write(tmp_path / "bin" / "runc", "#!/bin/sh\n", 0o755)
    check = check_runtime("runc", search_path=path, conmon_elsewhere=())
    assert (check.status, check.message) == ("ok", f"runc: {path}/conmon, {path}/runc")


# -- socket -------------------------------------------------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _answering(path: Path, status: int, body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path == "/api/v1/pods"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return str(path)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture
def agent_socket(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A Unix socket answering GET /api/v1/pods with request.param = (status, body)."""
    path = tmp_path / "agent.sock"
    status, body = request.param
    server = _UnixHTTPServer(str(path), _answering(path, status, body))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("agent_socket", [(200, json.dumps({"kind": "PodList", "items": [{}, {}]}).encode())],
                         indirect=True)
def test_socket_with_an_agent(agent_socket: Path) -> None:
    assert check_socket(str(agent_socket)) == Check("socket", "ok", f"an agent answers on {agent_socket} with 2 pods")


@pytest.mark.parametrize("agent_socket", [(500, b'{"message": "store is closed"}')], indirect=True)
def test_socket_with_an_api_error_warns(agent_socket: Path) -> None:
    check = check_socket(str(agent_socket))
    assert (check.status, check.message) == (
        "warn", f"an agent answers on {agent_socket} but listing pods failed: 500 store is closed")


@pytest.mark.parametrize("agent_socket", [(200, b"<html>hello</html>")], indirect=True)
def test_socket_with_something_else_warns(agent_socket: Path) -> None:
    check = check_socket(str(agent_socket))
    assert (check.status, check.message) == ("warn", f"something answers on {agent_socket}, but not as nodeagent does")


def test_socket_without_an_agent_warns(tmp_path: Path) -> None:
    check = check_socket(str(tmp_path / "agent.sock"))
    assert check.status == "warn"
    assert check.message.startswith("no agent is running: ")
    assert check.fix == "systemctl start nodeagent"


# -- ip_forward, state dir ----------------------------------------------------------------------------


def test_ip_forward(tmp_path: Path) -> None:
    assert check_ip_forward(str(write(tmp_path / "on", "1\n"))).status == "ok"
    off = check_ip_forward(str(write(tmp_path / "off", "0\n")))
    assert (off.status, off.message) == ("warn", "net.ipv4.ip_forward is 0: pod networking will need it")
    assert check_ip_forward(str(tmp_path / "absent")).status == "warn"


def test_existing_state_dir(tmp_path: Path) -> None:
    check = check_state_dir(str(tmp_path), min_free_bytes=0)
    assert check.status == "ok"
    assert check.message.startswith(f"{tmp_path}: ")
    assert check.message.endswith(" free")


def test_state_dir_that_can_be_created(tmp_path: Path) -> None:
    check = check_state_dir(str(tmp_path / "var" / "lib" / "nodeagent"), min_free_bytes=0)
    assert check.status == "ok"
    assert check.message.startswith(f"{tmp_path}/var/lib/nodeagent does not exist yet, can be created in {tmp_path}:")


def test_state_dir_below_a_file_fails(tmp_path: Path) -> None:
    blocker = write(tmp_path / "var", "")
    check = check_state_dir(str(blocker / "nodeagent"))
    assert (check.status, check.message) == ("fail", f"{blocker} is not a directory")


def test_state_dir_with_little_free_space_warns(tmp_path: Path) -> None:
    check = check_state_dir(str(tmp_path), min_free_bytes=1 << 62)
    assert check.status == "warn"
    assert "free (less than 4294967296.0 GiB)" in check.message
    assert check.fix == "free space on that filesystem or set nodeagent.stateDir elsewhere"


# -- config, the command ------------------------------------------------------------------------------


def test_config(tmp_path: Path) -> None:
    defaults, check = check_config(None)
    assert (defaults.fail_swap_on, check.status) == (True, "ok")
    good = write(tmp_path / "good.yaml", "failSwapOn: false\n")
    config, check = check_config(str(good))
    assert (config.fail_swap_on, check) == (False, Check("config", "ok", f"read {good}"))
    unknown = write(tmp_path / "unknown.yaml", "clusterDNS: [10.0.0.10]\n")
    assert check_config(str(unknown))[1] == Check(
        "config", "warn", f'{unknown}: clusterDNS: unknown field "clusterDNS" (not used by nodeagent)',
        "remove or correct those fields")
    bad = write(tmp_path / "bad.yaml", "failSwapOn: false\ncgroupDriver: openrc\n")
    config, check = check_config(str(bad))
    assert check.status == "fail"
    assert 'cgroupDriver: Unsupported value: "openrc"' in check.message
    assert config.fail_swap_on  # the defaults, not half of a bad file


def node_config(tmp_path: Path, extra: str = "") -> Path:
    """A configuration whose paths are all under tmp_path, so only the machine-wide checks see this machine."""
    manifests = tmp_path / "manifests"
    manifests.mkdir(mode=0o755)
    return write(tmp_path / "nodeagent.yaml", f"staticPodPath: {manifests}\n{extra}nodeagent:\n"
                 f"  stateDir: {tmp_path / 'state'}\n  socket: {tmp_path / 'agent.sock'}\n")


def test_command_fails_on_a_failed_check(tmp_path: Path) -> None:
    config = node_config(tmp_path, "cgroupDriver: systemd\n")
    result = CliRunner().invoke(doctor, ["--config", str(config)])
    assert result.exit_code == 1
    assert ("fail  cgroup driver: systemd (set by cgroupDriver in the configuration), but systemd is not PID 1 "
            "here -> set cgroupDriver: cgroupfs (or nodeagent.systemdBusAddress)") in result.stdout.splitlines()


def test_command_json(tmp_path: Path) -> None:
    config = node_config(tmp_path, "cgroupDriver: systemd\n")
    result = CliRunner().invoke(doctor, ["--config", str(config), "-o", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "fail"
    checks = {check["name"]: check for check in data["checks"]}
    assert checks["config"] == {"name": "config", "status": "ok", "message": f"read {config}", "fix": None}
    assert checks["cgroup driver"]["fix"] == "set cgroupDriver: cgroupfs (or nodeagent.systemdBusAddress)"
    assert checks["socket"]["status"] == "warn"


def test_on_this_machine(tmp_path: Path) -> None:
    """The real checks: root, this machine's cgroups, and its swap as psutil sees it."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as the agent does")
    config = node_config(tmp_path)
    result = CliRunner().invoke(doctor, ["--config", str(config)])
    lines = result.stdout.splitlines()
    assert "ok    root: running as root (euid 0)" in lines
    layout = detect_layout()
    if layout.version == 1 and layout.hybrid:  # the test machines: v1 controllers, cgroup2 beside them
        assert (f"ok    cgroups: v1 (hybrid): memory, cpu, cpuacct, pids mounted (cgroup2 at {layout.v2_mount} is "
                "not used)") in lines
    else:
        assert any(line.startswith(f"ok    cgroups: {layout.name}") for line in lines), lines
    if psutil.swap_memory().total == 0:
        assert "ok    swap: swap is off" in lines
    else:
        assert any(line.startswith("fail  swap: swap is on (") for line in lines), lines
    assert f"ok    manifests: {tmp_path / 'manifests'}: a directory of 0 files, owned by root, not writable by " \
           "group/other" in lines
    assert result.exit_code == (1 if any(line.startswith("fail") for line in lines) else 0)
    assert not (tmp_path / "state").exists()  # doctor looks, never creates


def test_quarantined_state_files_are_listed(tmp_path: Path) -> None:
    assert check_quarantined_state(str(tmp_path)) == Check("quarantined state", "ok", "no state file was moved aside")
    moved = tmp_path / "pods" / "u1" / "pod.json.quarantined-20261204T160000.000000Z"
    moved.parent.mkdir(parents=True)
    moved.write_text("{")
    (tmp_path / "pods" / "u2").mkdir()  # a pod without quarantine: not listed
    check = check_quarantined_state(str(tmp_path))
    assert check.status == "warn"
    assert check.message == (f"1 state file(s) of 1 pod(s) could not be read and were moved aside, nothing of those "
                             f"pods removed: {moved}")


def test_the_runc_seccomp_profile_is_checked(tmp_path: Path) -> None:
    profile = tmp_path / "seccomp.json"
    missing = check_seccomp_profile(str(profile))
    assert missing.status == "warn" and "golang-github-containers-common" in (missing.fix or "")
    profile.write_text("{}")
    assert check_seccomp_profile(str(profile)).status == "ok"
