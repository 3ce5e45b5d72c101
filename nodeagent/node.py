"""This node's capacity, read with psutil, and what of it pods may use."""

from __future__ import annotations

import dataclasses
import os
import re

import psutil

from nodeagent.cgroups.detect import CgroupLayout, detect_layout
from nodeagent.config import KubeletConfig
from nodeagent.plan.settings import NodeInfo

HUGEPAGES_DIR = "/sys/kernel/mm/hugepages"


def read_node_info(config: KubeletConfig) -> NodeInfo:
    """Capacity as the kubelet reports it (all CPUs, MemTotal, swap), with allocatable = capacity -
    systemReserved - kubeReserved (the value the kubelet gives the kubepods cgroup)."""
    cpu_millis = (os.cpu_count() or 1) * 1000
    memory = psutil.virtual_memory().total
    swap = psutil.swap_memory().total
    storage_root = config.nodeagent.state_dir if os.path.isdir(config.nodeagent.state_dir) else "/"
    storage = psutil.disk_usage(storage_root).total
    info = node_info(cpu_millis, memory, swap, config, storage_bytes=storage, hugepages=read_hugepages())
    return dataclasses.replace(info, hugetlb_controller=has_hugetlb(detect_layout()))


def read_hugepages(directory: str = HUGEPAGES_DIR) -> tuple[tuple[int, int], ...]:
    """(page size, total bytes) for each size the kernel offers, ascending (cadvisor's hugepages
    capacity: nr_hugepages pages of each size); () without hugepage support."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    for name in names:
        match = re.fullmatch(r"hugepages-(\d+)kB", name)
        if match is None:
            continue
        size = int(match.group(1)) * 1024
        try:
            with open(os.path.join(directory, name, "nr_hugepages")) as file:
                pages = int(file.read(64).strip() or 0)
        except (OSError, ValueError):
            pages = 0
        found.append((size, pages * size))
    return tuple(sorted(found))


def has_hugetlb(layout: CgroupLayout) -> bool:
    """The hugetlb controller is where the agent writes limits: mounted (v1), or offered at the root (v2)."""
    if layout.version == 1:
        return "hugetlb" in layout.v1_mounts
    try:
        with open(os.path.join(layout.v2_mount or "/sys/fs/cgroup", "cgroup.controllers")) as file:
            return "hugetlb" in file.read(4096).split()
    except OSError:
        return False


def node_info(cpu_millis: int, memory_bytes: int, swap_bytes: int, config: KubeletConfig, *,
              storage_bytes: int = 0, hugepages: tuple[tuple[int, int], ...] = ()) -> NodeInfo:
    """Allocatable = capacity - systemReserved - kubeReserved, hugepages-<size> included."""
    names = {size: f"hugepages-{_binary(size)}" for size, _ in hugepages}
    reserved = {"cpu": 0, "memory": 0, "ephemeral-storage": 0, **dict.fromkeys(names.values(), 0)}
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
        hugepages=tuple((size, max(total - reserved[names[size]], 0)) for size, total in hugepages),
    )


def _binary(size: int) -> str:
    """A page size as a resource name spells it: 2097152 -> "2Mi" (the kubelet's hugepages-2Mi)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = 1 << (10 * ("KMGTPE".index(suffix[0]) + 1))
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
