"""Defaulting, static pod identity and QoS classes, as the kubelet and API server give them."""

import pytest

from nodeagent.api.identity import CONFIG_HASH, CONFIG_ORIGIN, CONFIG_SOURCE
from nodeagent.api.resources import QOSClass
from tests.conftest import example, load_pod

SIMPLE = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: nginx:1.25}]\n"


def test_api_defaults() -> None:
    pod = load_pod(SIMPLE).pod
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.dns_policy == "ClusterFirst"
    container = pod.all_containers()[0]
    assert container.image_pull_policy == "IfNotPresent"
    assert container.termination_message_path == "/dev/termination-log"


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
     ("registry:5000/nginx", "Always"), ("registry:5000/nginx:1", "IfNotPresent"),
     ("nginx@sha256:" + "a" * 64, "IfNotPresent")],
)
def test_pull_policy_defaults_from_the_tag(image: str, policy: str) -> None:
    pod = load_pod(SIMPLE.replace("nginx:1.25", image)).pod
    assert pod.all_containers()[0].image_pull_policy == policy


def test_requests_default_to_limits_and_keep_their_own() -> None:
    pod = load_pod(SIMPLE.replace("image: nginx:1.25", "image: x, resources: {limits: {cpu: '1', memory: 1Gi}, "
                                  "requests: {cpu: 500m}}")).pod
    requests = pod.all_containers()[0].resources.requests or {}
    assert {k: str(v) for k, v in requests.items()} == {"cpu": "500m", "memory": "1Gi"}


def test_probe_defaults() -> None:
    pod = load_pod(SIMPLE.replace("image: nginx:1.25", "image: x, livenessProbe: {exec: {command: [cat]}}")).pod
    probe = pod.all_containers()[0].liveness_probe
    assert probe is not None
    assert (probe.period_seconds, probe.timeout_seconds, probe.failure_threshold, probe.success_threshold,
            probe.initial_delay_seconds) == (10, 1, 3, 1, 0)


def test_static_identity() -> None:
    static = load_pod(example("static-web.yaml"), node_name="My-Node1")
    assert static.name == "static-web-my-node1"
    assert static.namespace == "default"
    assert static.pod.metadata.labels == {"role": "myrole"}
    assert static.pod.spec.node_name == "My-Node1"
    assert len(static.uid) == 32 and int(static.uid, 16) >= 0
    assert static.pod.metadata.annotations == {CONFIG_HASH: static.uid, CONFIG_SOURCE: "file",
                                               CONFIG_ORIGIN: "/m/pod.yaml"}


def test_uid_is_deterministic_and_depends_on_content_node_and_source() -> None:
    base = load_pod(SIMPLE).uid
    assert load_pod(SIMPLE).uid == base
    assert load_pod(SIMPLE + "  restartPolicy: Never\n").uid != base
    assert load_pod(SIMPLE, node_name="node2").uid != base
    assert load_pod(SIMPLE, origin="/m/other.yaml").uid != base


def test_uid_ignores_formatting() -> None:
    reformatted = ('{"kind": "Pod", "apiVersion": "v1", "spec": {"containers": [{"image": "nginx:1.25", '
                   '"name": "c"}]}, "metadata": {"name": "web"}}')
    assert load_pod(reformatted).uid == load_pod(SIMPLE).uid


def test_metadata_uid_wins_but_the_hash_still_follows_content() -> None:
    with_uid = SIMPLE.replace("{name: web}", "{name: web, uid: 1234-abcd}")
    static = load_pod(with_uid)
    assert static.uid == "1234-abcd"
    assert static.config_hash != load_pod(with_uid + "  restartPolicy: Never\n").config_hash


@pytest.mark.parametrize(
    ("name", "qos"),
    [("qos-guaranteed.yaml", QOSClass.GUARANTEED), ("qos-burstable.yaml", QOSClass.BURSTABLE),
     ("qos-besteffort.yaml", QOSClass.BESTEFFORT), ("qos-two-containers.yaml", QOSClass.BURSTABLE),
     ("memory-demo.yaml", QOSClass.BURSTABLE), ("memory-demo-2.yaml", QOSClass.BURSTABLE),
     ("memory-demo-3.yaml", QOSClass.BURSTABLE), ("init-demo.yaml", QOSClass.BESTEFFORT),
     ("redis-emptydir.yaml", QOSClass.BESTEFFORT), ("static-web.yaml", QOSClass.BESTEFFORT)],
)
def test_examples_qos(name: str, qos: QOSClass) -> None:
    assert load_pod(example(name)).qos is qos


def _pod_with(app: str, init: str = "") -> str:
    text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n" + app
    return text + ("  initContainers:\n" + init if init else "")


@pytest.mark.parametrize(
    ("app", "init", "qos"),
    [
        ("  - {name: a, image: x, resources: {limits: {cpu: '1', memory: 1Gi}}}\n", "", QOSClass.GUARANTEED),
        ("  - {name: a, image: x, resources: {limits: {cpu: '1', memory: 1Gi}}}\n"
         "  - {name: b, image: x, resources: {limits: {cpu: 500m, memory: 1Gi}}}\n", "", QOSClass.GUARANTEED),
        ("  - {name: a, image: x, resources: {limits: {cpu: '1', memory: 1Gi}}}\n",
         "  - {name: i, image: x}\n", QOSClass.BURSTABLE),
        ("  - {name: a, image: x, resources: {limits: {cpu: '1'}}}\n", "", QOSClass.BURSTABLE),
        ("  - {name: a, image: x, resources: {limits: {cpu: '1', memory: 1Gi}, requests: {cpu: 500m}}}\n", "",
         QOSClass.BURSTABLE),
        ("  - {name: a, image: x, resources: {limits: {ephemeral-storage: 1Gi}}}\n", "", QOSClass.BESTEFFORT),
        ("  - {name: a, image: x, resources: {requests: {cpu: '0'}}}\n", "", QOSClass.BESTEFFORT),
    ],
    ids=["guaranteed", "guaranteed-two", "init-without-limits", "cpu-only", "request-below-limit",
         "only-other-resources", "zero-request"],
)
def test_qos_rules(app: str, init: str, qos: QOSClass) -> None:
    assert load_pod(_pod_with(app, init)).qos is qos
