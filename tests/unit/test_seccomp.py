"""seccompProfile as OCI's linux.seccomp: the default profile resolved per container, Localhost files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.seccomp import DEFAULT_PROFILE, oci_seccomp, resolve

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.0"}},
    ],
}


def test_resolved_for_an_unprivileged_container_on_amd64() -> None:
    assert resolve(PROFILE, {"CAP_CHOWN"}, machine="x86_64", kernel="6.1.0-18-amd64") == {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}


def test_capabilities_arch_and_kernel_choose_the_rules() -> None:
    found = resolve(PROFILE, {"CAP_SYS_ADMIN"}, machine="aarch64", kernel="9.1")
    assert found["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [(r["names"], r["action"]) for r in found["syscalls"]] == [
        (["read", "write"], "SCMP_ACT_ALLOW"), (["mount"], "SCMP_ACT_ALLOW"), (["new_call"], "SCMP_ACT_ALLOW")]


def test_unconfined_is_no_filter() -> None:
    assert oci_seccomp("Unconfined", None, ()) is None


@pytest.mark.skipif(not Path(DEFAULT_PROFILE).exists(), reason="containers-common's profile is not installed")
def test_the_nodes_default_profile_loads() -> None:
    found = oci_seccomp("RuntimeDefault", None, ["CAP_CHOWN"])
    assert found is not None and found["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {name for rule in found["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for name in rule["names"]}
    assert {"read", "execve", "clone"} <= allowed and "kexec_load" not in allowed


def test_a_localhost_profile_is_read_and_a_missing_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_LOG", "syscalls": []}))
    assert oci_seccomp("Localhost", str(path), ()) == {"defaultAction": "SCMP_ACT_LOG", "syscalls": []}
    with pytest.raises(RuntimeStartError) as caught:
        oci_seccomp("Localhost", str(tmp_path / "missing.json"), ())
    assert caught.value.reason == "CreateContainerConfigError" and "missing.json" in caught.value.message
    path.write_text("[1]")
    with pytest.raises(RuntimeStartError, match="no defaultAction"):
        oci_seccomp("Localhost", str(path), ())
