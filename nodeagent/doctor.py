"""Checks of this node for `nodeagent doctor`: can the agent run here, as configured, and what to fix if not.

Each check is a small function that takes what it looks at (a path, a value, a layout) and returns a
Check, so tests hand in temporary files; run_checks() feeds them this machine's paths.

    run_checks(config) -> [Check("root", "ok", "running as root (euid 0)"), ...]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nodeagent.agent.store import PodStore
from nodeagent.cgroups.detect import CgroupLayout, choose_driver, detect_layout, systemd_is_init
from nodeagent.cli.client import AgentClient, ApiError
from nodeagent.config import KubeletConfig, load_config
from nodeagent.errors import AgentUnavailableError, ConfigError, NodeAgentError
from nodeagent.runtime.conmon import CONMON_ELSEWHERE
from nodeagent.runtime.seccomp import DEFAULT_PROFILE

Status = Literal["ok", "warn", "fail"]

PROC_SWAPS = "/proc/swaps"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
GiB = 1 << 30
MAX_LINKS = 40  # as the kernel's limit on symlinks in one lookup
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"
# What the process and runc runtimes run, and the Debian package that has it.
PROCESS_TOOLS = {"conmon": "conmon", "mount": "mount", "setpriv": "util-linux", "nsenter": "util-linux"}
RUNC_TOOLS = {"conmon": "conmon"}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}


def check_config(path: str | None) -> tuple[KubeletConfig, Check]:
    """The configuration to check the node against, and what is wrong with the file (None: the defaults)."""
    if path is None:
        return load_config(None)[0], Check("config", "ok", "no configuration file: the embedded defaults")
    try:
        config, warnings = load_config(path)
    except ConfigError as exc:
        return load_config(None)[0], Check("config", "fail", f"{exc} (the checks below use the embedded defaults)",
                                           f"correct {path}")
    if warnings:
        return config, Check("config", "warn", f"{path}: " + "; ".join(str(w) for w in warnings),
                             "remove or correct those fields")
    return config, Check("config", "ok", f"read {path}")


def check_root(euid: int) -> Check:
    if euid == 0:
        return Check("root", "ok", "running as root (euid 0)")
    return Check("root", "fail", f"running as euid {euid}: the agent creates cgroups and starts processes as "
                 "other users", "run nodeagent (and this check) as root")


def check_cgroups(layout: CgroupLayout) -> Check:
    """The hierarchy, and the controllers the agent writes: v1 mounts, or the v2 root's cgroup.controllers."""
    if layout.version == 2:
        assert layout.v2_mount is not None  # version 2 means cgroup2 is mounted at /sys/fs/cgroup
        try:
            with open(os.path.join(layout.v2_mount, "cgroup.controllers")) as handle:
                available = handle.read().split()
        except OSError as exc:
            return Check("cgroups", "fail", f"v2: cannot read {layout.v2_mount}/cgroup.controllers: {exc.strerror}",
                         "mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)")
        missing = [c for c in V2_CONTROLLERS if c not in available]
        if missing:
            where = f"{layout.v2_mount}/cgroup.controllers"
            return Check("cgroups", "fail", f"v2: {', '.join(missing)} missing from {where}",
                         "enable them in the kernel (CONFIG_MEMCG, CONFIG_CGROUP_SCHED, CONFIG_CGROUP_PIDS) and "
                         "make sure no v1 hierarchy holds them")
        return Check("cgroups", "ok", f"v2 at {layout.v2_mount}: {', '.join(V2_CONTROLLERS)} available")
    missing = [c for c in V1_CONTROLLERS if c not in layout.v1_mounts]
    if missing:
        return Check("cgroups", "fail", f"{layout.name}: {', '.join(missing)} not mounted",
                     "mount each missing controller, e.g. mkdir -p /sys/fs/cgroup/pids && "
                     "mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids")
    beside = f" (cgroup2 at {layout.v2_mount} is not used)" if layout.hybrid else ""
    return Check("cgroups", "ok", f"{layout.name}: {', '.join(V1_CONTROLLERS)} mounted{beside}")


def check_swap_accounting(memory_root: str) -> Check:
    """cgroup v1 only: without memory.memsw.* the NoSwap and LimitedSwap limits are not written."""
    if os.path.exists(os.path.join(memory_root, MEMSW_LIMIT)):
        return Check("swap accounting", "ok", f"{MEMSW_LIMIT} present in {memory_root}")
    return Check("swap accounting", "warn", f"{MEMSW_LIMIT} is missing from {memory_root}: swap limits cannot be "
                 "enforced, containers may use any amount of swap",
                 "boot with swapaccount=1 on the kernel command line")


def check_driver(driver: str, why: str, *, systemd_reachable: bool) -> Check:
    if driver == "systemd" and not systemd_reachable:
        return Check("cgroup driver", "fail", f"systemd ({why}), but systemd is not PID 1 here",
                     "set cgroupDriver: cgroupfs (or nodeagent.systemdBusAddress)")
    return Check("cgroup driver", "ok", f"{driver} ({why})")


def check_swap(swaps_path: str, *, fail_swap_on: bool, swap_behavior: str) -> Check:
    """/proc/swaps against failSwapOn, as the kubelet refuses to start with swap on."""
    try:
        with open(swaps_path) as handle:
            rows = [line.split() for line in handle.readlines()[1:] if line.strip()]
    except OSError as exc:
        return Check("swap", "warn", f"cannot read {swaps_path}: {exc.strerror}", "mount proc at /proc")
    if not rows:
        return Check("swap", "ok", "swap is off")
    devices = "; ".join(f"{row[0]}, {_size(int(row[2]) * 1024)}" for row in rows)
    if fail_swap_on:
        return Check("swap", "fail", f"swap is on ({devices}) and failSwapOn is true",
                     "turn swap off (swapoff -a) or set failSwapOn: false")
    return Check("swap", "ok", f"swap is on ({devices}) and failSwapOn is false: pods get swapBehavior {swap_behavior}")


def check_manifests(path: str) -> Check:
    """staticPodPath: whoever can write there (or to a manifest in it, or to any directory or symlink on the
    way to either, links followed as the agent follows them) runs code as root."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Check("manifests", "warn", f"{path} does not exist: no pods will run", f"mkdir -p -m 0755 {path}")
    except OSError as exc:
        return Check("manifests", "fail", f"cannot stat {path}: {exc.strerror}", "set staticPodPath to a directory")
    if stat.S_ISDIR(info.st_mode):
        try:
            manifests = sorted(e.path for e in os.scandir(path) if not e.name.startswith(".") and e.is_file())
        except OSError as exc:
            return Check("manifests", "fail", f"cannot list {path}: {exc.strerror}", "run nodeagent doctor as root")
        kind = f"a directory of {len(manifests)} file{'' if len(manifests) == 1 else 's'}"
    elif stat.S_ISREG(info.st_mode):
        manifests, kind = [], "a file"
    else:
        return Check("manifests", "fail", f"{path} is neither a directory nor a file",
                     "set staticPodPath to a directory of manifests")
    for name in [path, *manifests]:
        if (unsafe := _unsafe_way(name)) is not None:
            return unsafe
    return Check("manifests", "ok", f"{path}: {kind}, owned by root, not writable by group/other")


def _unsafe_way(name: str) -> Check | None:
    """What the agent reads for `name` must be root's, and so must every directory and symlink on the way.
    A directory above it may be writable by others if it is sticky (as /tmp): then only root renames what
    root owns in it."""
    read = os.path.realpath(name)
    for entry in reversed(_way(name)):
        try:
            info = os.stat(entry, follow_symlinks=False)
        except FileNotFoundError:  # removed while we looked
            continue
        via = "" if entry == name else f" (reached from {name})"
        sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and entry != read
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            return Check("manifests", "fail", f"{entry} is writable by group/other (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): anyone who can write there runs code as root{via}",
                         f"chmod go-w {entry}")
        if info.st_uid != 0:
            return Check("manifests", "fail", f"{entry} is owned by uid {info.st_uid}, not root: that user can run "
                         f"code as root{via}", f"chown root:root {entry}")
    return None


def _way(path: str) -> list[str]:
    """Every directory and symlink from / to what `path` names, symlinks followed (at most MAX_LINKS)."""
    found = ["/"]
    current = "/"
    todo = os.path.abspath(path).split("/")
    links = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, part)
        if entry not in found:
            found.append(entry)
        if os.path.islink(entry) and links < MAX_LINKS:
            links += 1
            target = os.readlink(entry)
            current = "/" if target.startswith("/") else current
            todo = [*target.split("/"), *todo]
        else:
            current = entry
    return found


def check_runtime(runtime: str, *, search_path: str | None, runc_path: str = "runc",
                  conmon_elsewhere: Sequence[str] = CONMON_ELSEWHERE) -> Check:
    """The programs the `process` or `runc` runtime runs (on search_path, None: $PATH); runcPath may be crun."""
    tools = dict(PROCESS_TOOLS) if runtime == "process" else {**RUNC_TOOLS, runc_path: os.path.basename(runc_path)}
    found: dict[str, str] = {}
    for tool in tools:
        where = shutil.which(tool, path=search_path)
        if where is None and tool == "conmon":
            where = next((p for p in conmon_elsewhere if os.access(p, os.X_OK)), None)
        if where is not None:
            found[tool] = where
    missing = [tool for tool in tools if tool not in found]
    if missing:
        packages = " ".join(dict.fromkeys(tools[tool] for tool in missing))
        return Check("runtime", "fail", f"{runtime}: {', '.join(missing)} not found", f"apt-get install {packages}")
    return Check("runtime", "ok", f"{runtime}: " + ", ".join(found.values()))


def check_seccomp_profile(path: str) -> Check:
    """The runc runtime's RuntimeDefault seccomp profile (kubeadm's pods all ask for it)."""
    if os.path.isfile(path):
        return Check("seccomp", "ok", f"RuntimeDefault is {path}")
    return Check("seccomp", "warn", f"{path} is missing: pods asking for seccompProfile RuntimeDefault (every "
                 "kubeadm static pod) are refused with CreateContainerConfigError",
                 "apt-get install golang-github-containers-common")


def check_cri(endpoint: str | None, cgroup_driver: str) -> Check:
    """The CRI runtime: found (configured or discovered), answering, and on nodeagent's cgroup driver."""
    return asyncio.run(_check_cri(endpoint, cgroup_driver))


async def _check_cri(endpoint: str | None, cgroup_driver: str) -> Check:
    from nodeagent.runtime.cri.runtime import CriRuntime, DriverMismatchError  # gRPC only for this check

    runtime = CriRuntime(endpoint, cgroup_version=0)
    try:
        await runtime.connect(cgroup_driver)
    except DriverMismatchError as exc:
        return Check("cri", "fail", str(exc))
    except NodeAgentError as exc:
        return Check("cri", "fail", str(exc), "start the runtime, or set containerRuntimeEndpoint to where it listens")
    finally:
        await runtime.close()
    return Check("cri", "ok",
                 f"{runtime.runtime_name} at {runtime.endpoint}, cgroup driver {cgroup_driver} on both sides")


def check_socket(path: str, *, timeout_seconds: float = 5.0) -> Check:
    """Whether an agent answers on its socket, and with how many pods."""
    try:
        pods = AgentClient(path, timeout=timeout_seconds).get("/api/v1/pods")["items"]
    except AgentUnavailableError as exc:
        return Check("socket", "warn", f"no agent is running: {exc}", "systemctl start nodeagent")
    except ApiError as exc:
        return Check("socket", "warn", f"an agent answers on {path} but listing pods failed: {exc.code} {exc}",
                     "look at the agent's log: journalctl -u nodeagent")
    except (ValueError, KeyError, TypeError):
        return Check("socket", "warn", f"something answers on {path}, but not as nodeagent does",
                     f"find what listens on {path} (ss -xlp)")
    return Check("socket", "ok", f"an agent answers on {path} with {len(pods)} pod{'' if len(pods) == 1 else 's'}")


def check_ip_forward(path: str) -> Check:
    try:
        with open(path) as handle:
            value = handle.read().strip()
    except OSError as exc:
        return Check("ip_forward", "warn", f"cannot read {path}: {exc.strerror}", "mount proc at /proc")
    if value == "1":
        return Check("ip_forward", "ok", "net.ipv4.ip_forward is 1")
    return Check("ip_forward", "warn", f"net.ipv4.ip_forward is {value}: pod networking will need it",
                 "sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/ to keep it")


def check_state_dir(path: str, *, min_free_bytes: int = GiB) -> Check:
    """stateDir exists (or its nearest existing parent lets it be created), with free space."""
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        return Check("state dir", "fail", f"{existing} is not a directory", f"remove it or set nodeagent.stateDir "
                     f"elsewhere than {path}")
    if not os.access(existing, os.W_OK):
        return Check("state dir", "fail", f"{existing} is not writable (read-only filesystem, or not root)",
                     "set nodeagent.stateDir to a writable directory")
    free = shutil.disk_usage(existing).free
    where = path if existing == path else f"{path} does not exist yet, can be created in {existing}"
    if free < min_free_bytes:
        return Check("state dir", "warn", f"{where}: only {_size(free)} free (less than {_size(min_free_bytes)})",
                     "free space on that filesystem or set nodeagent.stateDir elsewhere")
    return Check("state dir", "ok", f"{where}: {_size(free)} free")


def check_quarantined_state(state_dir: str) -> Check:
    """State files the agent moved aside (unreadable, or a newer agent's): their pods are kept as they were,
    running but unmanaged unless a source names them again, until someone looks."""
    found = PodStore(state_dir).quarantined()
    if not found:
        return Check("quarantined state", "ok", "no state file was moved aside")
    files = [path for paths in found.values() for path in paths]
    return Check("quarantined state", "warn", f"{len(files)} state file(s) of {len(found)} pod(s) could not be read "
                 f"and were moved aside, nothing of those pods removed: {', '.join(files)}",
                 "read `nodeagent events` (StateQuarantined) and the log; once the pod is running again or known "
                 "gone, remove the file (a pod no source names keeps running until its processes and "
                 "<stateDir>/pods/<uid> are removed by hand)")


def run_checks(config: KubeletConfig) -> list[Check]:
    """Every check, on this machine, for this configuration."""
    layout = detect_layout()
    checks = [check_root(os.geteuid()), check_cgroups(layout)]
    if layout.version == 1 and "memory" in layout.v1_mounts:
        checks.append(check_swap_accounting(layout.v1_mounts["memory"]))
    driver, why = choose_driver(config.cgroup_driver)
    return [
        *checks,
        check_driver(driver, why, systemd_reachable=systemd_is_init() or bool(config.nodeagent.systemd_bus_address)),
        check_swap(PROC_SWAPS, fail_swap_on=config.fail_swap_on, swap_behavior=config.swap_behavior().value),
        check_manifests(config.static_pod_path),
        check_cri(config.container_runtime_endpoint, driver) if config.nodeagent.runtime == "cri"
        else check_runtime(config.nodeagent.runtime, search_path=None, runc_path=config.nodeagent.runc_path),
        *([check_seccomp_profile(DEFAULT_PROFILE)] if config.nodeagent.runtime == "runc" else []),
        check_socket(config.nodeagent.socket),
        check_ip_forward(IP_FORWARD),
        check_state_dir(config.nodeagent.state_dir),
        check_quarantined_state(config.nodeagent.state_dir),
    ]


def render_check(check: Check) -> str:
    """`fail  swap: swap is on (...) and failSwapOn is true -> turn swap off ...`"""
    line = f"{check.status:<4}  {check.name}: {check.message}"
    return f"{line} -> {check.fix}" if check.fix and check.status != "ok" else line


def _size(size_bytes: int) -> str:
    """In the largest unit that shows at least 1.0: a 1 GiB swap file (1 GiB less its header page) is 1.0 GiB."""
    for unit, factor in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if round(size_bytes / factor, 1) >= 1:
            return f"{size_bytes / factor:.1f} {unit}"
    return f"{size_bytes} B"
