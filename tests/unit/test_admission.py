"""Admission: the kubelet's order, words and numbers."""

import pytest

from nodeagent.agent.admission import Allocatable, admit, allocatable, eviction_memory_bytes
from nodeagent.api.manifest import StaticPod
from nodeagent.plan.settings import NodeInfo
from tests.conftest import example, load_pod

GiB = 1 << 30
MiB = 1 << 20


def pod(name: str, cpu: str = "0", memory: str = "0") -> StaticPod:
    return load_pod(f"kind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: x, "
                    f"resources: {{requests: {{cpu: '{cpu}', memory: '{memory}'}}}}}}]\n")


def test_memory_demo_3_does_not_fit() -> None:
    capacity = Allocatable(cpu_millis=2000, memory_bytes=8 * GiB, pods=110)
    rejection = admit(load_pod(example("memory-demo-3.yaml")), [], capacity)
    assert rejection is not None
    assert rejection.reason == "OutOfmemory"
    assert rejection.message == (f"Node didn't have enough resource: memory, requested: {1000 * GiB}, used: 0, "
                                 f"capacity: {8 * GiB}")


def test_used_counts_admitted_pods_and_order_is_pods_cpu_memory() -> None:
    capacity = Allocatable(cpu_millis=1000, memory_bytes=GiB, pods=2)
    first = pod("a", "600m", "512Mi")
    assert admit(first, [], capacity) is None
    rejection = admit(pod("b", "500m", "768Mi"), [first], capacity)
    assert rejection is not None and rejection.reason == "OutOfcpu"
    assert rejection.message == "Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000"
    memory = admit(pod("c", "100m", "768Mi"), [first], capacity)
    assert memory is not None and memory.reason == "OutOfmemory"
    full = admit(pod("d"), [first, pod("e")], capacity)
    assert full is not None and full.reason == "OutOfpods"
    assert full.message == "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"


def test_best_effort_pods_need_only_a_pod_slot() -> None:
    capacity = Allocatable(cpu_millis=0, memory_bytes=0, pods=1)
    assert admit(pod("a"), [], capacity) is None


@pytest.mark.parametrize(
    ("eviction", "expected"),
    [(None, 100 * MiB), ({"memory.available": "500Mi"}, 500 * MiB), ({"memory.available": "10%"}, int(8 * GiB * 10 / 100)),
     ({"nodefs.available": "10%"}, 0)],
    ids=["kubelet-default", "quantity", "percentage", "other-signals-only"],
)
def test_eviction_memory(eviction: dict[str, str] | None, expected: int) -> None:
    assert eviction_memory_bytes(eviction, 8 * GiB) == expected


def test_allocatable_subtracts_reservations_and_eviction() -> None:
    node = NodeInfo(cpu_millis=4000, memory_bytes=16 * GiB, allocatable_cpu_millis=3500,
                    allocatable_memory_bytes=15 * GiB)
    assert allocatable(node, eviction_memory=100 * MiB, max_pods=110) == Allocatable(3500, 15 * GiB - 100 * MiB, 110)
