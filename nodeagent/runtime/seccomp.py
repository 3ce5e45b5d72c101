"""A container's seccomp filter as the OCI spec's `linux.seccomp`, from its seccompProfile.

    oci_seccomp("RuntimeDefault", None, caps)      -> the node's default profile, resolved for this container
    oci_seccomp("Localhost", "/var/lib/nodeagent/seccomp/audit.json", caps) -> that file's profile
    oci_seccomp("Unconfined", None, caps)          -> None: no filter

The default profile is the one the node's container tools ship (containers-common's
/usr/share/containers/seccomp.json, the Moby lineage containerd's default is ported from): read at
start, never copied into nodeagent. Its `includes`/`excludes` by capability, architecture and kernel are
resolved as Moby's and containers/common's setupSeccomp resolve them. A missing or unreadable profile is a
CreateContainerConfigError naming the file, never a container run without the filter it asked for.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Collection
from typing import Any

from nodeagent.errors import RuntimeStartError

DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"
MAX_PROFILE_BYTES = 1024 * 1024
CONFIG_ERROR = "CreateContainerConfigError"
# platform.machine() -> (the profiles' Go architecture name, libseccomp's)
ARCHES = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
          "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
          "riscv64": ("riscv64", "SCMP_ARCH_RISCV64")}


def oci_seccomp(profile_type: str, localhost: str | None, capabilities: Collection[str],
                default_profile: str = DEFAULT_PROFILE) -> dict[str, Any] | None:
    """`linux.seccomp` for a container with these (bounding) capabilities; None for Unconfined."""
    if profile_type == "Unconfined":
        return None
    if profile_type == "Localhost":
        assert localhost is not None  # validation: Localhost comes with its profile
        return resolve(_load(localhost, "seccompProfile.localhostProfile"), capabilities)
    return resolve(_load(default_profile, "seccompProfile RuntimeDefault: the node's default profile"), capabilities)


def _load(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise RuntimeStartError(CONFIG_ERROR, f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise RuntimeStartError(CONFIG_ERROR, f"{what}: {path} is larger than {MAX_PROFILE_BYTES} bytes")
    try:
        profile = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RuntimeStartError(CONFIG_ERROR, f"{what}: {path} is not a JSON seccomp profile: {exc}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise RuntimeStartError(CONFIG_ERROR, f"{what}: {path} has no defaultAction")
    return profile


def resolve(profile: dict[str, Any], capabilities: Collection[str], machine: str | None = None,
            kernel: str | None = None) -> dict[str, Any]:
    """A Docker/containers-format profile as OCI's LinuxSeccomp for one container: its architectures (the
    node's and their sub-architectures) and the syscall rules whose includes/excludes it meets."""
    machine = machine or platform.machine()
    go_arch, scmp_arch = ARCHES.get(machine, (machine, ""))
    release = _version(kernel or os.uname().release)
    seccomp: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if isinstance(profile.get("defaultErrnoRet"), int):
        seccomp["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if isinstance(profile.get("architectures"), list):
        seccomp["architectures"] = profile["architectures"]
    else:
        for entry in profile.get("archMap") or []:
            if isinstance(entry, dict) and entry.get("architecture") == scmp_arch:
                seccomp["architectures"] = [scmp_arch, *(entry.get("subArchitectures") or [])]
    rules = []
    for call in profile.get("syscalls") or []:
        if not isinstance(call, dict) or not _applies(call, set(capabilities), go_arch, release):
            continue
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        rule: dict[str, Any] = {"names": names, "action": call.get("action")}
        for key in ("args", "errnoRet"):
            if call.get(key) is not None:
                rule[key] = call[key]
        rules.append(rule)
    seccomp["syscalls"] = rules
    return seccomp


def _applies(call: dict[str, Any], capabilities: set[str], arch: str, release: tuple[int, ...]) -> bool:
    includes, excludes = call.get("includes") or {}, call.get("excludes") or {}
    if any(cap in capabilities for cap in excludes.get("caps") or []) or arch in (excludes.get("arches") or []):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if any(cap not in capabilities for cap in includes.get("caps") or []):
        return False
    minimum = includes.get("minKernel")
    return not (isinstance(minimum, str) and release < _version(minimum))


def _version(release: str) -> tuple[int, ...]:
    """"6.1.0-18-amd64" -> (6, 1, 0)."""
    parts = []
    for part in release.split("-", 1)[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
