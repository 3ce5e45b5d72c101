"""securityContext on the runc runtime, for real: images pushed to a registry on loopback, a real agent with
real runc and conmon; each container reports its own /proc/self/status and whether it could write to its
`/`. runAsNonRoot is checked against the image's USER, as the kubelet does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.integration.harness import AgentHarness
from tests.integration.images import Pushed, busybox_layer, image_config, push_image
from tests.integration.registry import Registry, registry  # noqa: F401
from tests.integration.test_runc import RuncAgent
from tests.security.report import DEFAULT, NONE, assert_refused, mask, own_capabilities, report, status_of


@dataclass(frozen=True)
class Images:
    root: Pushed  # no USER: root
    numeric: Pushed  # USER 1000:1000
    named: Pushed  # USER nobody


@pytest.fixture(scope="module")
def images(registry: Registry) -> Images:  # noqa: F811
    busybox = busybox_layer()
    return Images(
        root=push_image(registry, "secctx/root", "1.0", [busybox]),
        numeric=push_image(registry, "secctx/numeric", "1.0", [busybox],
                           config=image_config([busybox], user="1000:1000")),
        named=push_image(registry, "secctx/named", "1.0", [busybox], config=image_config([busybox], user="nobody")),
    )


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, registry: Registry,  # noqa: F811
          images: Images) -> Iterator[AgentHarness]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    runc = RuncAgent(tmp_path_factory.mktemp("secctx-runc"), [registry])
    try:
        runc.harness.start()
        yield runc.harness
    finally:
        runc.clean_up()


def pod(name: str, image: Pushed, container: dict[str, Any], **spec: Any) -> str:
    return yaml.safe_dump({"kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, **spec,
        "containers": [{"name": "c", "image": image.reference, "command": ["sh", "-c", report("/probe")],
                        **container}]}})


def test_the_default_is_the_runtime_default_capability_set_as_root(agent: AgentHarness, images: Images) -> None:
    agent.write("sec-default.yaml", pod("sec-default", images.root, {}))
    found = status_of(agent, "sec-default")
    assert (found["Uid"], found["Gid"]) == ("0 0 0 0", "0 0 0 0")
    assert (found["CapEff"], found["CapBnd"]) == (DEFAULT, DEFAULT)
    assert (found["NoNewPrivs"], found["root"]) == ("0", "written")


def test_capabilities_no_new_privs_and_a_read_only_root(agent: AgentHarness, images: Images) -> None:
    text = yaml.safe_load(pod("sec-locked", images.root, {
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}, volumes=[{"name": "data", "emptyDir": {}}]))
    command = text["spec"]["containers"][0]["command"]
    command[2] = "touch /data/file && echo 'volume: written'; " + command[2]
    agent.write("sec-locked.yaml", yaml.safe_dump(text))
    found = status_of(agent, "sec-locked")
    assert found["CapEff"] == found["CapBnd"] == mask(["CAP_NET_BIND_SERVICE"])
    assert found["NoNewPrivs"] == "1"
    assert (found["root"], found["volume"]) == ("read-only", "written")


def test_privileged_keeps_every_capability(agent: AgentHarness, images: Images) -> None:
    agent.write("sec-privileged.yaml", pod("sec-privileged", images.root, {"securityContext": {"privileged": True}}))
    assert status_of(agent, "sec-privileged")["CapEff"] == own_capabilities()


def test_run_as_group_alone_keeps_the_images_user_and_groups_are_the_pods(agent: AgentHarness,
                                                                          images: Images) -> None:
    agent.write("sec-groups.yaml", pod("sec-groups", images.numeric, {"securityContext": {"runAsGroup": 5}},
                                       securityContext={"supplementalGroups": [6], "fsGroup": 7}))
    found = status_of(agent, "sec-groups")
    assert (found["Uid"], found["Gid"]) == ("1000 1000 1000 1000", "5 5 5 5")
    assert found["Groups"] == "6 7"
    assert found["CapEff"] == NONE


@pytest.mark.parametrize(("name", "image", "context", "expected"), [
    ("sec-nonroot", "root", {"runAsNonRoot": True}, "container has runAsNonRoot and image will run as root"),
    ("sec-nonroot-named", "named", {"runAsNonRoot": True},
     "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root"),
    ("sec-nonroot-uid0", "numeric", {"runAsNonRoot": True, "runAsUser": 0},
     "container's runAsUser breaks non-root policy"),
])
def test_run_as_non_root_is_refused_in_the_kubelets_words(agent: AgentHarness, images: Images, name: str,
                                                         image: str, context: dict[str, Any],
                                                         expected: str) -> None:
    agent.write(f"{name}.yaml", pod(name, getattr(images, image), {}, securityContext=context))
    assert_refused(agent, name, expected)


def test_run_as_non_root_with_a_numeric_image_user_runs(agent: AgentHarness, images: Images) -> None:
    agent.write("sec-nonroot-ok.yaml", pod("sec-nonroot-ok", images.numeric, {},
                                           securityContext={"runAsNonRoot": True}))
    assert status_of(agent, "sec-nonroot-ok")["Uid"] == "1000 1000 1000 1000"
