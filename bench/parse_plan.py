"""Decode + validate + plan throughput over 1,000 varied manifests, on one core.

    .venv/bin/python bench/parse_plan.py [--count 1000] [--rounds 5]

Two sets, because the cost grows with the manifest: the Kubernetes docs' examples (about 300
bytes each, cycled), and generated pods of about 1 KB (1-3 containers, init containers, env,
probes, volumes, every QoS class), planned for v1/cgroupfs, v2/systemd+LimitedSwap and
v2+MemoryQoS in turn. Prints pods/s (goal: >= 2,000 pods/s on one core) and where the time goes, and
beside it the rate by CPU time, which other processes sharing the core do not lower (the goal is judged on
wall time).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import yaml

from nodeagent.api.manifest import load_manifest
from nodeagent.plan.pod import plan_pod
from nodeagent.plan.settings import CgroupDriverName, NodeInfo, PlanSettings, SwapBehavior

NODE = NodeInfo(cpu_millis=8000, memory_bytes=32 << 30, swap_bytes=8 << 30)
SETTINGS = [
    PlanSettings(cgroup_version=1),
    PlanSettings(cgroup_version=2, cgroup_driver=CgroupDriverName.SYSTEMD, swap_behavior=SwapBehavior.LIMITED_SWAP),
    PlanSettings(cgroup_version=2, memory_qos=True, pod_pids_limit=1024),
]


def manifest(rng: random.Random, index: int) -> bytes:
    def resources() -> dict[str, object]:
        choice = rng.randrange(4)
        if choice == 0:
            return {}
        if choice == 1:
            return {"limits": {"cpu": f"{rng.randrange(100, 2000)}m", "memory": f"{rng.randrange(64, 2048)}Mi"}}
        if choice == 2:
            return {"requests": {"cpu": f"{rng.randrange(10, 500)}m", "memory": f"{rng.randrange(16, 512)}Mi"},
                    "limits": {"memory": f"{rng.randrange(512, 4096)}Mi"}}
        return {"requests": {"memory": f"{rng.randrange(1, 4)}Gi"}}

    def container(name: str, *, init: bool = False) -> dict[str, object]:
        c: dict[str, object] = {
            "name": name,
            "image": rng.choice(["nginx", "redis:7", "busybox:1.36", "registry:5000/app@sha256:" + "a" * 64]),
            "command": ["sh", "-c", "sleep 3600"], "resources": resources(),
            "env": [{"name": f"VAR_{i}", "value": str(i)} for i in range(rng.randrange(4))],
        }
        if rng.random() < 0.5:
            c["ports"] = [{"containerPort": rng.randrange(1, 65535), "protocol": "TCP"}]
        if rng.random() < 0.4 and not init:
            c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}
        if rng.random() < 0.3:
            c["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
            c["env"].append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})  # type: ignore[union-attr]
        return c

    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"pod-{index}", "namespace": rng.choice(["default", "kube-system", "edge"]),
                     "labels": {"app": f"app-{index % 17}", "tier": "edge"}},
        "spec": {
            "containers": [container(f"c{i}") for i in range(rng.randrange(1, 4))],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "restartPolicy": rng.choice(["Always", "OnFailure", "Never"]),
        },
    }
    if rng.random() < 0.3:
        pod["spec"]["initContainers"] = [container("init", init=True)]  # type: ignore[index]
    return yaml.safe_dump(pod).encode()


def docs_examples(count: int) -> list[bytes]:
    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
    return [examples[i % len(examples)].read_bytes() for i in range(count)]


def run_once(documents: list[bytes]) -> tuple[float, float, float]:
    """(decode + validate seconds, plan seconds, CPU seconds of both): wall time, and the CPU time that other
    processes on a shared core do not add to."""
    load_seconds = plan_seconds = 0.0
    cpu_started = time.process_time()
    for index, content in enumerate(documents):
        started = time.perf_counter()
        result = load_manifest(content, origin=f"/etc/kubernetes/manifests/{index}.yaml", source="file", node_name="n1")
        loaded = time.perf_counter()
        assert result.ok, result.problems
        for pod in result.pods:
            plan_pod(pod, NODE, SETTINGS[index % len(SETTINGS)])
        plan_seconds += time.perf_counter() - loaded
        load_seconds += loaded - started
    return load_seconds, plan_seconds, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal is stated
    rng = random.Random(42)
    sets = {"docs examples": docs_examples(args.count),
            "generated": [manifest(rng, i) for i in range(args.count)]}
    print(f"{args.count} manifests per set, {args.rounds} rounds, one core; goal >= 2,000 pods/s")
    for label, documents in sets.items():
        average_bytes = sum(map(len, documents)) / len(documents)
        run_once(documents[:100])  # warm up
        rates = []
        for _ in range(args.rounds):
            load_s, plan_s, cpu_s = run_once(documents)
            rates.append((args.count / (load_s + plan_s), load_s, plan_s, args.count / cpu_s))
        best = max(rates)
        median = statistics.median(r[0] for r in rates)
        print(f"{label:>14} ({average_bytes:4.0f} B avg): median {median:6,.0f} pods/s, "
              f"best {best[0]:6,.0f} pods/s; per pod: decode+validate {best[1] / args.count * 1e6:4.0f} us, "
              f"plan {best[2] / args.count * 1e6:4.0f} us; goal >= 2,000 pods/s (median): "
              f"{'met' if median >= 2000 else 'MISSED'}; by CPU time: median "
              f"{statistics.median(r[3] for r in rates):6,.0f} pods/s")


if __name__ == "__main__":
    main()
