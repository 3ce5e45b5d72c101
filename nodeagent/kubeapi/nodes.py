"""This node as a `v1 Node`: capacity, allocatable, conditions, addresses, nodeInfo."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import time
import uuid
from typing import Any

import psutil

from nodeagent.agent.admission import Allocatable
from nodeagent.plan.settings import NodeInfo
from nodeagent.timeformat import rfc3339

KUBELET_VERSION = "v1.32.0-nodeagent"


def _os_image() -> str:
    try:
        with open("/etc/os-release") as handle:
            for line in handle.read(65536).splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _machine_id() -> str:
    try:
        with open("/etc/machine-id") as handle:
            return handle.read(64).strip()
    except OSError:
        return ""


def node_json(name: str, info: NodeInfo, capacity: Allocatable, *, address: str, runtime: str,
              started: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": _arch()}
    cap = {"cpu": f"{info.cpu_millis // 1000}" if info.cpu_millis % 1000 == 0 else f"{info.cpu_millis}m",
           "memory": f"{info.memory_bytes // 1024}Ki", "pods": str(capacity.pods),
           "ephemeral-storage": f"{info.ephemeral_storage_bytes // 1024}Ki"}
    alloc = {"cpu": f"{info.pod_cpu_millis}m", "memory": f"{info.pod_memory_bytes // 1024}Ki",
             "pods": str(capacity.pods), "ephemeral-storage": f"{info.ephemeral_storage_bytes // 1024}Ki"}
    beat, since = rfc3339(now), rfc3339(started)
    conditions = [
        {"type": kind, "status": "False", "reason": reason, "message": message, "lastHeartbeatTime": beat,
         "lastTransitionTime": since}
        for kind, reason, message in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))
    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "nodeagent is posting ready status",
          "lastHeartbeatTime": beat, "lastTransitionTime": since}]
    uname = os.uname()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nodeagent:{name}")),
                     "labels": labels, "creationTimestamp": since, "resourceVersion": "1"},
        "spec": {},
        "status": {
            "capacity": cap, "allocatable": alloc, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {"machineID": _machine_id(), "systemUUID": "", "bootID": "", "kernelVersion": uname.release,
                         "osImage": _os_image(), "containerRuntimeVersion": runtime,
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": _arch()},
        },
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class NodeSampler:
    """The node's CPU (a rate between two reads of /proc/stat, by psutil) and memory working set."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    async def metrics(self, name: str) -> dict[str, Any]:
        if self._last is None:
            self._last = await asyncio.to_thread(_busy)
            await asyncio.sleep(0.5)
        then, busy_then = self._last
        now, busy = self._last = await asyncio.to_thread(_busy)
        window = max(now - then, 1e-3)
        memory = psutil.virtual_memory()
        return {"metadata": {"name": name}, "timestamp": rfc3339(dt.datetime.now(dt.UTC)), "window": f"{window:.3f}s",
                "usage": {"cpu": f"{int((busy - busy_then) / window * 1e9)}n",
                          "memory": f"{(memory.total - memory.available) // 1024}Ki"}}


def _busy() -> tuple[float, float]:
    times = psutil.cpu_times()
    return time.monotonic(), sum(times) - times.idle - getattr(times, "iowait", 0.0)
