"""This node's capacity, read with psutil, and what of it pods may use."""

from __future__ import annotations

import os

import psutil

from nodeagent.config import KubeletConfig
from nodeagent.plan.settings import NodeInfo


def read_node_info(config: KubeletConfig) -> NodeInfo:
    """Capacity as the kubelet reports it (all CPUs, MemTotal, swap), with allocatable = capacity -
    systemReserved - kubeReserved (the value the kubelet gives the kubepods cgroup)."""
    cpu_millis = (os.cpu_count() or 1) * 1000
    memory = psutil.virtual_memory().total
    swap = psutil.swap_memory().total
    storage_root = config.nodeagent.state_dir if os.path.isdir(config.nodeagent.state_dir) else "/"
    storage = psutil.disk_usage(storage_root).total
    return node_info(cpu_millis, memory, swap, config, storage_bytes=storage)


def node_info(cpu_millis: int, memory_bytes: int, swap_bytes: int, config: KubeletConfig, *,
              storage_bytes: int = 0) -> NodeInfo:
    reserved = {"cpu": 0, "memory": 0, "ephemeral-storage": 0}
    for reservation in (config.system_reserved or {}, config.kube_reserved or {}):
        for name in reserved:
            if name in reservation:
                quantity = reservation[name]
                reserved[name] += quantity.milli_value() if name == "cpu" else quantity.value()
    return NodeInfo(
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        swap_bytes=swap_bytes,
        allocatable_cpu_millis=max(cpu_millis - reserved["cpu"], 0),
        allocatable_memory_bytes=max(memory_bytes - reserved["memory"], 0),
        ephemeral_storage_bytes=max(storage_bytes - reserved["ephemeral-storage"], 0),
    )
