"""What a plan depends on besides the pod: the node's size and the kubelet settings that shape cgroups."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CgroupDriverName(enum.Enum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


class SwapBehavior(enum.Enum):
    NO_SWAP = "NoSwap"
    LIMITED_SWAP = "LimitedSwap"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The node's capacity and what pods may use of it (capacity minus reservations)."""

    cpu_millis: int
    memory_bytes: int
    swap_bytes: int = 0
    allocatable_cpu_millis: int | None = None
    allocatable_memory_bytes: int | None = None
    ephemeral_storage_bytes: int = 0  # allocatable, for the downward API
    hugepages: tuple[tuple[int, int], ...] = ()  # (page size, allocatable bytes) per size the node has, ascending
    hugetlb_controller: bool = False  # the hugetlb cgroup controller is there to write limits to

    @property
    def hugepage_sizes(self) -> tuple[int, ...]:
        """The sizes whose hugetlb limits the kubelet writes on every cgroup (none without the controller)."""
        return tuple(size for size, _ in self.hugepages) if self.hugetlb_controller else ()

    @property
    def pod_cpu_millis(self) -> int:
        return self.cpu_millis if self.allocatable_cpu_millis is None else self.allocatable_cpu_millis

    @property
    def pod_memory_bytes(self) -> int:
        return self.memory_bytes if self.allocatable_memory_bytes is None else self.allocatable_memory_bytes


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """The KubeletConfiguration fields that decide cgroup values, with the kubelet's defaults."""

    cgroup_version: int = 2
    cgroup_driver: CgroupDriverName = CgroupDriverName.CGROUPFS
    cgroup_root: str = "/"
    cgroups_per_qos: bool = True
    cpu_cfs_quota: bool = True
    cpu_cfs_quota_period_us: int = 100_000
    pod_pids_limit: int = -1
    swap_behavior: SwapBehavior = SwapBehavior.NO_SWAP
    memory_qos: bool = False
    memory_throttling_factor: float = 0.9
    page_size: int = 4096
    enforce_node_allocatable: bool = True  # enforceNodeAllocatable has "pods"
    single_process_oom_kill: bool = False  # v2: no memory.oom.group (the kubelet's default is v1 only)
