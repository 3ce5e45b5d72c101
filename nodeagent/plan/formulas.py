"""The kubelet's conversions from Kubernetes amounts to kernel values, one pure function each.

Sources: pkg/kubelet/cm/helpers_linux.go, pkg/kubelet/qos/policy.go,
pkg/kubelet/kuberuntime/kuberuntime_container_linux.go. Integer arithmetic as in Go; where the
kubelet computes in float64 (swap, memory.high) so does this, to give the same numbers.
"""

from __future__ import annotations

import math

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
MIN_QUOTA_PERIOD_US = 1000

GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """cpu.shares for a cpu amount: 1024 per cpu, within the kernel's [2, 262144]; 0 -> 2."""
    if milli_cpu == 0:
        return MIN_SHARES
    shares = milli_cpu * SHARES_PER_CPU // MILLI_CPU_TO_CPU
    return max(MIN_SHARES, min(MAX_SHARES, shares))


def milli_cpu_to_quota(milli_cpu: int, period_us: int) -> int:
    """CFS quota in us per period for a cpu limit, at least 1 ms; 0 (no limit) -> 0, meaning unset."""
    if milli_cpu == 0:
        return 0
    return max(milli_cpu * period_us // MILLI_CPU_TO_CPU, MIN_QUOTA_PERIOD_US)


def shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight [1, 10000] for cpu.shares [2, 262144]: 1 + (shares-2)*9999/262142."""
    return 1 + (shares - MIN_SHARES) * 9999 // (MAX_SHARES - MIN_SHARES)


def burstable_oom_score_adj(memory_request_bytes: int, memory_capacity_bytes: int) -> int:
    """1000 - 1000*request/capacity, kept within [3, 999] so that Burstable sits between the others."""
    adj = 1000 - (1000 * memory_request_bytes) // memory_capacity_bytes
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adj == BESTEFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return adj


def limited_swap_bytes(memory_request_bytes: int, node_memory_bytes: int, node_swap_bytes: int) -> int:
    """LimitedSwap: the container's share of swap, its request's share of node memory (float64 as Go)."""
    if node_memory_bytes <= 0 or memory_request_bytes > node_memory_bytes:
        return 0
    return int(float(memory_request_bytes) / float(node_memory_bytes) * float(node_swap_bytes))


def memory_high_bytes(request_bytes: int, ceiling_bytes: int, factor: float, page_size: int) -> int:
    """MemoryQoS memory.high: request + factor*(limit or allocatable - request), down to a page."""
    raw = float(request_bytes) + (float(ceiling_bytes) - float(request_bytes)) * factor
    return math.floor(raw / float(page_size)) * page_size
