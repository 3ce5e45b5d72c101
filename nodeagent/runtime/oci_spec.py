"""The OCI runtime spec (config.json) of one container, from its ContainerSpec and its image.

Pure. Kubernetes' rules for what runs (command replaces ENTRYPOINT, args replaces CMD), image env
under the pod's env, runc's default mounts, masked and read-only paths, the default capability set
plus securityContext, the pod's network namespace (or the host's with hostNetwork), and the plan's
resources as linux.resources (cgroup v2 values that OCI cannot express as `unified`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.plan.resource_config import ResourceConfig, hugepage_unit_size, render_v2
from nodeagent.runtime.base import ContainerSpec

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# containerd's and Docker's default set
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES,
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE",
    "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
# runc's defaults (`runc spec`)
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi")
# volumeMounts[].mountPropagation as bind mount options, as containerd sets them
PROPAGATION = {"None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True, slots=True)
class ImageDefaults:
    """What the image's config says about running it."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value"
    working_dir: str = ""
    user: str = ""  # "uid[:gid]" (numeric; names are resolved by the caller)


@dataclass(frozen=True, slots=True)
class Security:
    privileged: bool = False
    read_only_root: bool = False
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    allow_privilege_escalation: bool | None = None
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    extra_mounts: tuple[tuple[str, str, bool], ...] = field(default=())  # (source, destination, read-only)


def process_args(spec: ContainerSpec, image: ImageDefaults) -> list[str]:
    """Kubernetes' rule: command replaces the ENTRYPOINT (and drops CMD), args replaces CMD."""
    if spec.command:
        return [*spec.command, *spec.args]
    return [*image.entrypoint, *(spec.args or image.cmd)]


def environment(spec: ContainerSpec, image: ImageDefaults) -> list[str]:
    env: dict[str, str] = {}
    for item in image.env:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = spec.hostname
    env.update(spec.env)
    return [f"{key}={value}" for key, value in env.items()]


def user(spec: ContainerSpec, image: ImageDefaults) -> dict[str, Any]:
    uid = gid = 0
    if image.user:
        name, _, group = image.user.partition(":")
        uid = int(name) if name.isdigit() else 0
        gid = int(group) if group.isdigit() else uid
    if spec.run_as_user is not None:
        uid = spec.run_as_user
        gid = uid if spec.run_as_group is None else gid
    if spec.run_as_group is not None:
        gid = spec.run_as_group
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if spec.supplemental_groups:
        out["additionalGids"] = list(spec.supplemental_groups)
    return out


def capabilities(security: Security) -> list[str]:
    if security.privileged:
        return list(ALL_CAPABILITIES)
    wanted = [c if c.startswith("CAP_") else f"CAP_{c.upper()}" for c in security.add]
    dropped = {c if c.startswith("CAP_") else f"CAP_{c.upper()}" for c in security.drop}
    if "CAP_ALL" in dropped:
        return [c for c in wanted if c != "CAP_ALL"]
    chosen = ALL_CAPABILITIES if "CAP_ALL" in wanted else DEFAULT_CAPABILITIES + tuple(wanted)
    return sorted({c for c in chosen if c not in dropped and c != "CAP_ALL"})


def mounts(spec: ContainerSpec, security: Security, pod_files: Mapping[str, str]) -> list[dict[str, Any]]:
    """runc's defaults, then /etc/hosts, /etc/hostname, /etc/resolv.conf, the termination log, volumes."""
    found: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755",
                                                                               "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if not security.privileged else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    for destination, source in pod_files.items():
        found.append({"destination": destination, "type": "bind", "source": source, "options": ["rbind", "rw"]})
    for mount in spec.mounts:
        options = ["rbind", "ro" if mount.read_only else "rw", PROPAGATION[mount.propagation]]
        found.append({"destination": mount.container_path, "type": "bind", "source": mount.host_path,
                      "options": options})
    for source, destination, read_only in security.extra_mounts:
        found.append({"destination": destination, "type": "bind", "source": source,
                      "options": ["rbind", "ro" if read_only else "rw"]})
    return found


def linux_resources(config: ResourceConfig, cgroup_version: int) -> dict[str, Any]:
    """OCI linux.resources; on v2 everything goes as `unified` files, exactly as the plan wrote them."""
    if cgroup_version == 2:
        unified = render_v2(config)
        return {"unified": unified} if unified else {}
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    cpu: dict[str, Any] = {}
    if config.cpu_shares is not None:
        cpu["shares"] = config.cpu_shares
    if config.cpu_quota_us is not None:
        cpu["quota"] = config.cpu_quota_us
    if config.cpu_period_us is not None:
        cpu["period"] = config.cpu_period_us
    if cpu:
        resources["cpu"] = cpu
    memory: dict[str, Any] = {}
    if config.memory_bytes is not None:
        memory["limit"] = config.memory_bytes
    if config.memsw_bytes is not None:
        memory["swap"] = config.memsw_bytes
    if memory:
        resources["memory"] = memory
    if config.pids_max is not None:
        resources["pids"] = {"limit": config.pids_max}
    if config.hugepage_limits is not None:
        resources["hugepageLimits"] = [{"pageSize": hugepage_unit_size(size), "limit": limit}
                                       for size, limit in config.hugepage_limits]
    return resources


def systemd_cgroups_path(path: str) -> str:
    """runc's systemd form `slice:prefix:name` of a container scope path (runc makes `<prefix>-<name>.scope`):
    ".../kubepods-pod1.slice/nodeagent-1-c.scope" -> "kubepods-pod1.slice:nodeagent:1-c"."""
    parts = [part for part in path.split("/") if part]
    if not parts or not parts[-1].endswith(".scope") or "-" not in parts[-1]:
        raise ValueError(f"not a systemd scope path: {path!r}")
    prefix, _, name = parts[-1].removesuffix(".scope").partition("-")
    parent = parts[-2] if len(parts) > 1 else "-.slice"
    return f"{parent}:{prefix}:{name}"


def oci_spec(spec: ContainerSpec, image: ImageDefaults, *, rootfs: str, cgroups_path: str, cgroup_version: int,
             security: Security, netns: str | None, pod_files: Mapping[str, str], oom_score_adj: int | None,
             namespaces: Sequence[str] = ("pid", "ipc", "uts", "mount")) -> dict[str, Any]:
    """The whole config.json. With hostNetwork the container keeps the node's UTS namespace too (and so its
    host name), as containerd does for a pod on the host's network."""
    caps = capabilities(security)
    shared = {"uts": security.host_network, "pid": security.host_pid, "ipc": security.host_ipc}
    namespaces = [kind for kind in namespaces if not shared.get(kind)]
    process: dict[str, Any] = {
        "terminal": False, "user": user(spec, image), "args": process_args(spec, image),
        "env": environment(spec, image), "cwd": spec.working_dir or image.working_dir or "/",
        "capabilities": {kind: caps for kind in ("bounding", "effective", "permitted")},
        "noNewPrivileges": security.allow_privilege_escalation is False,
    }
    if oom_score_adj is not None:
        process["oomScoreAdj"] = oom_score_adj
    linux_namespaces: list[dict[str, str]] = [{"type": kind} for kind in namespaces]
    if not security.host_network:
        linux_namespaces.append({"type": "network", **({"path": netns} if netns else {})})
    linux: dict[str, Any] = {
        "namespaces": linux_namespaces, "cgroupsPath": cgroups_path,
        "resources": linux_resources(spec.cgroup.resources, cgroup_version),
    }
    if not security.privileged:
        linux.update(maskedPaths=list(MASKED_PATHS), readonlyPaths=list(READONLY_PATHS))
    kinds = {mount.propagation for mount in spec.mounts}
    if kinds - {"None"}:  # mounts can only propagate into (or out of) the container through a slave/shared root
        linux["rootfsPropagation"] = "rshared" if "Bidirectional" in kinds else "rslave"
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION, "process": process,
        "root": {"path": rootfs, "readonly": security.read_only_root},
        "mounts": mounts(spec, security, pod_files), "linux": linux,
    }
    if "uts" in namespaces:
        config["hostname"] = spec.hostname  # runc refuses a host name without a UTS namespace of its own
    return config
