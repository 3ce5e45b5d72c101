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
    return node_info(cpu_millis, memory, swap, config)


def node_info(cpu_millis: int, memory_bytes: int, swap_bytes: int, config: KubeletConfig) -> NodeInfo:
    reserved_cpu = 0
    reserved_memory = 0
    for reserved in (config.system_reserved or {}, config.kube_reserved or {}):
        if "cpu" in reserved:
            reserved_cpu += reserved["cpu"].milli_value()
        if "memory" in reserved:
            reserved_memory += reserved["memory"].value()
    return NodeInfo(
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        swap_bytes=swap_bytes,
        allocatable_cpu_millis=max(cpu_millis - reserved_cpu, 0),
        allocatable_memory_bytes=max(memory_bytes - reserved_memory, 0),
    )
