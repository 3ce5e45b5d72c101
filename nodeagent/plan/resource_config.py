"""One resource struct, spelled as cgroup v1 or v2 files (opencontainers/cgroups fs and fs2 writers).

    ResourceConfig(cpu_shares=1024, cpu_quota_us=50000, cpu_period_us=100000, memory_bytes=...)
      v1: cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us, memory.limit_in_bytes, ...
      v2: cpu.weight, cpu.max "50000 100000", memory.max, ...

None, and only None, means "leave the kernel's value alone"; -1 (UNLIMITED) means "unlimited", written
as -1 (v1) or max (v2). Files come out in the order they must be written.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.plan.formulas import shares_to_weight

UNLIMITED = -1
_HUGEPAGE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    cpu_shares: int | None = None
    cpu_quota_us: int | None = None  # UNLIMITED: no quota
    cpu_period_us: int | None = None
    memory_bytes: int | None = None
    memsw_bytes: int | None = None  # v1 memory+swap total
    swap_max_bytes: int | None = None  # v2 swap alone
    pids_max: int | None = None
    memory_min_bytes: int | None = None  # v2 MemoryQoS
    memory_high_bytes: int | None = None  # v2 MemoryQoS
    memory_oom_group: bool | None = None  # v2
    hugepage_limits: tuple[tuple[int, int], ...] | None = None  # (page size, limit) in bytes, sizes ascending


def hugepage_unit_size(page_size: int) -> str:
    """The kernel's name of a page size, "2MB" for 2097152 (v1helper.HugePageUnitSizeFromByteSize)."""
    size, index = page_size, 0
    while size % 1024 == 0 and index < len(_HUGEPAGE_UNITS) - 1:
        size //= 1024
        index += 1
    return f"{size}{_HUGEPAGE_UNITS[index]}"


def render(config: ResourceConfig, cgroup_version: int) -> dict[str, str]:
    return render_v2(config) if cgroup_version == 2 else render_v1(config)


def render_v1(config: ResourceConfig) -> dict[str, str]:
    files: dict[str, str] = {}
    if config.cpu_shares is not None:
        files["cpu.shares"] = str(config.cpu_shares)
    if config.cpu_period_us is not None:
        files["cpu.cfs_period_us"] = str(config.cpu_period_us)
    if config.cpu_quota_us is not None:
        files["cpu.cfs_quota_us"] = str(config.cpu_quota_us)
    if config.memory_bytes is not None:
        files["memory.limit_in_bytes"] = str(config.memory_bytes)
    if config.memsw_bytes is not None:
        files["memory.memsw.limit_in_bytes"] = str(config.memsw_bytes)
    if config.pids_max is not None:
        files["pids.max"] = _max_or(config.pids_max)
    for size, limit in config.hugepage_limits or ():
        files[f"hugetlb.{hugepage_unit_size(size)}.limit_in_bytes"] = str(limit)
    return files


def render_v2(config: ResourceConfig) -> dict[str, str]:
    files: dict[str, str] = {}
    if config.cpu_shares is not None:
        files["cpu.weight"] = str(shares_to_weight(config.cpu_shares))
    if config.cpu_quota_us is not None or config.cpu_period_us is not None:
        quota = "max" if config.cpu_quota_us in (None, UNLIMITED) else str(config.cpu_quota_us)
        files["cpu.max"] = f"{quota} {config.cpu_period_us}" if config.cpu_period_us is not None else quota
    if config.memory_bytes is not None:
        files["memory.max"] = _max_or(config.memory_bytes)
    if config.swap_max_bytes is not None:
        files["memory.swap.max"] = _max_or(config.swap_max_bytes)
    if config.memory_min_bytes is not None:
        files["memory.min"] = str(config.memory_min_bytes)
    if config.memory_high_bytes is not None:
        files["memory.high"] = _max_or(config.memory_high_bytes)
    if config.memory_oom_group is not None:
        files["memory.oom.group"] = "1" if config.memory_oom_group else "0"
    if config.pids_max is not None:
        files["pids.max"] = _max_or(config.pids_max)
    for size, limit in config.hugepage_limits or ():
        files[f"hugetlb.{hugepage_unit_size(size)}.max"] = str(limit)
    return files


def _max_or(value: int) -> str:
    return "max" if value == UNLIMITED else str(value)
