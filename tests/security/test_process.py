"""securityContext on the process runtime, for real: a real agent starts host processes under conmon, and
each reports its own /proc/self/status (Uid, Gid, Groups, capabilities, NoNewPrivs) and whether it could
write to `/`. runAsNonRoot is refused with the kubelet's words."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import AgentHarness, wait_for
from tests.security.report import DEFAULT, NONE, assert_refused, mask, own_capabilities, report, status_of

PROBE_FILE = f"/nodeagent-secctx-{secrets.token_hex(4)}"  # in `/`: removed by the container, else by the test


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHarness]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups and starts processes")
    harness = AgentHarness(tmp_path_factory.mktemp("secctx-process"))
    try:
        harness.start()
        yield harness
    finally:
        try:
            harness.clean_up()
        finally:
            Path(PROBE_FILE).unlink(missing_ok=True)


def pod(name: str, container: dict[str, Any], **spec: Any) -> str:
    return yaml.safe_dump({"kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, **spec,
        "containers": [{"name": "c", "image": "host", "command": ["sh", "-c", report(PROBE_FILE)], **container}]}})


def test_the_default_is_the_runtime_default_capability_set_as_root(agent: AgentHarness) -> None:
    agent.write("sec-default.yaml", pod("sec-default", {}))
    found = status_of(agent, "sec-default")
    assert (found["Uid"], found["Gid"], found["Groups"]) == ("0 0 0 0", "0 0 0 0", "")
    assert (found["CapEff"], found["CapPrm"], found["CapBnd"], found["CapInh"]) == (DEFAULT, DEFAULT, DEFAULT, NONE)
    assert found["NoNewPrivs"] == "0"
    assert found["root"] == "written"


def test_capabilities_and_no_new_privs_also_for_exec_probes(agent: AgentHarness) -> None:
    # the probe passes only where the probe's own process has the same capabilities and no_new_privs
    probe = 'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status | tr -d "[:space:]" | grep -qx "CapEff:{}NoNewPrivs:1"'
    agent.write("sec-caps.yaml", pod("sec-caps", {
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                            "allowPrivilegeEscalation": False},
        "readinessProbe": {"exec": {"command": ["sh", "-c", probe.format(mask(["CAP_NET_BIND_SERVICE"]))]},
                           "periodSeconds": 1}}))
    found = status_of(agent, "sec-caps")
    assert found["CapEff"] == found["CapBnd"] == mask(["CAP_NET_BIND_SERVICE"])
    assert found["NoNewPrivs"] == "1"
    wait_for(lambda: agent.container_status("sec-caps", "c")["ready"], what="ready: the probe saw the same")


def test_privileged_keeps_every_capability(agent: AgentHarness) -> None:
    agent.write("sec-privileged.yaml", pod("sec-privileged", {"securityContext": {"privileged": True}}))
    found = status_of(agent, "sec-privileged")
    assert found["CapEff"] == found["CapBnd"] == own_capabilities()


def test_run_as_group_alone_keeps_the_uid_and_groups_are_the_pods(agent: AgentHarness) -> None:
    agent.write("sec-groups.yaml", pod("sec-groups", {"securityContext": {"runAsGroup": 5}},
                                       securityContext={"supplementalGroups": [6], "fsGroup": 7}))
    found = status_of(agent, "sec-groups")
    assert (found["Uid"], found["Gid"], found["Groups"]) == ("0 0 0 0", "5 5 5 5", "6 7")


def test_a_user_other_than_root_has_no_capabilities_left(agent: AgentHarness) -> None:
    agent.write("sec-user.yaml", pod("sec-user", {"securityContext": {"runAsUser": 65534}}))
    found = status_of(agent, "sec-user")
    assert (found["Uid"], found["Gid"]) == ("65534 65534 65534 65534", "65534 65534 65534 65534")
    assert (found["CapEff"], found["CapBnd"]) == (NONE, DEFAULT)


def test_read_only_root_file_system_keeps_the_volumes_writable(agent: AgentHarness, tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = yaml.safe_load(pod("sec-readonly", {"securityContext": {"readOnlyRootFilesystem": True},
                                               "volumeMounts": [{"name": "data", "mountPath": str(data)}]},
                              volumes=[{"name": "data", "emptyDir": {}}]))
    command = text["spec"]["containers"][0]["command"]
    command[2] = f"touch {data}/file && echo 'volume: written'; " + command[2]
    agent.write("sec-readonly.yaml", yaml.safe_dump(text))
    found = status_of(agent, "sec-readonly")
    assert found["root"] == "read-only"
    assert found["volume"] == "written"
    assert not Path(PROBE_FILE).exists()


@pytest.mark.parametrize(("name", "context", "expected"), [
    ("sec-nonroot", {"runAsNonRoot": True}, "container has runAsNonRoot and image will run as root"),
    ("sec-nonroot-uid0", {"runAsNonRoot": True, "runAsUser": 0}, "container's runAsUser breaks non-root policy"),
])
def test_run_as_non_root_is_refused_in_the_kubelets_words(agent: AgentHarness, name: str,
                                                         context: dict[str, Any], expected: str) -> None:
    agent.write(f"{name}.yaml", pod(name, {}, securityContext=context))
    assert_refused(agent, name, expected)


def test_run_as_non_root_with_a_user_runs(agent: AgentHarness) -> None:
    agent.write("sec-nonroot-ok.yaml", pod("sec-nonroot-ok", {"securityContext": {"runAsUser": 1000}},
                                           securityContext={"runAsNonRoot": True}))
    assert status_of(agent, "sec-nonroot-ok")["Uid"] == "1000 1000 1000 1000"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user can reach (pytest's tmp_path is root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="nodeagent-secctx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_fs_group_owns_the_empty_dir_and_what_is_made_in_it(agent: AgentHarness, open_dir: Path) -> None:
    data = open_dir / "owned"
    text = yaml.safe_load(pod("sec-fsgroup", {"securityContext": {"runAsUser": 65534},
                                              "volumeMounts": [{"name": "data", "mountPath": str(data)}]},
                              securityContext={"fsGroup": 7}, volumes=[{"name": "data", "emptyDir": {}}]))
    command = text["spec"]["containers"][0]["command"]
    command[2] = (f"touch {data}/file && stat -c 'volume: %g %a' {data} && stat -c 'file: %g' {data}/file; "
                  + command[2])
    agent.write("sec-fsgroup.yaml", yaml.safe_dump(text))
    found = status_of(agent, "sec-fsgroup")
    assert (found["volume"], found["file"]) == ("7 2777", "7")
    assert found["Groups"] == "7"


def test_selinux_options_are_refused_not_ignored(agent: AgentHarness) -> None:
    agent.write("sec-selinux.yaml", pod("sec-selinux", {"securityContext": {"seLinuxOptions": {"level": "s0:c1"}}}))

    def refused() -> dict[str, Any] | None:
        waiting = agent.container_status("sec-selinux", "c")["state"].get("waiting", {})
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    message = wait_for(refused, what="CreateContainerConfigError")["message"]
    assert message.startswith("securityContext.seLinuxOptions: nodeagent applies no SELinux labels")
