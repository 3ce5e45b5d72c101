"""securityContext on the cri runtime, for real: the agent against a real containerd
(tests/integration/containerd.py); each container reports its own /proc/self/status and whether it could
write to its `/`. runAsNonRoot is checked against the image's user as containerd reports it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import AgentHarness
from tests.integration.test_cri import configure, remove_sandboxes
from tests.security.report import DEFAULT, assert_refused, mask, own_capabilities, report, status_of

__all__ = ["containerd", "cri_images"]  # the fixtures, imported for pytest


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, containerd: Containerd) -> Iterator[AgentHarness]:
    harness = AgentHarness(tmp_path_factory.mktemp("secctx-cri"))
    try:
        configure(harness, containerd)
        harness.start()
        yield harness
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups
    finally:
        harness.clean_up()


def pod(name: str, container: dict[str, Any], **spec: Any) -> str:
    return yaml.safe_dump({"kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, **spec,
        "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", report("/probe")], **container}]}})


def test_the_default_is_the_runtime_default_capability_set_as_root(agent: AgentHarness) -> None:
    agent.write("sec-default.yaml", pod("sec-default", {}))
    found = status_of(agent, "sec-default")
    assert (found["Uid"], found["CapEff"], found["NoNewPrivs"], found["root"]) == ("0 0 0 0", DEFAULT, "0", "written")


def test_capabilities_no_new_privs_and_a_read_only_root(agent: AgentHarness) -> None:
    agent.write("sec-locked.yaml", pod("sec-locked", {"securityContext": {
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "runAsGroup": 5, "runAsUser": 0}}, securityContext={"supplementalGroups": [6]}))
    found = status_of(agent, "sec-locked")
    assert found["CapEff"] == mask(["CAP_NET_BIND_SERVICE"])
    assert (found["NoNewPrivs"], found["root"]) == ("1", "read-only")
    assert (found["Gid"], found["Groups"].split()[-1]) == ("5 5 5 5", "6")


def test_privileged_keeps_every_capability(agent: AgentHarness) -> None:
    agent.write("sec-privileged.yaml", pod("sec-privileged", {"securityContext": {"privileged": True}}))
    assert status_of(agent, "sec-privileged")["CapEff"] == own_capabilities()


def test_run_as_non_root_is_refused_in_the_kubelets_words(agent: AgentHarness) -> None:
    agent.write("sec-nonroot.yaml", pod("sec-nonroot", {}, securityContext={"runAsNonRoot": True}))
    assert_refused(agent, "sec-nonroot", "container has runAsNonRoot and image will run as root")
