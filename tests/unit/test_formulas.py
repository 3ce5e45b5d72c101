"""The kubelet's conversions with the kubelet's own numbers (helpers_linux_test.go, policy_test.go)."""

import pytest

from nodeagent.plan import formulas


@pytest.mark.parametrize(
    ("milli", "shares"),
    [(0, 2), (1, 2), (2, 2), (10, 10), (100, 102), (250, 256), (500, 512), (700, 716), (1000, 1024),
     (1500, 1536), (2000, 2048), (256000, 262144), (300000, 262144)],
)
def test_milli_cpu_to_shares(milli: int, shares: int) -> None:
    assert formulas.milli_cpu_to_shares(milli) == shares


@pytest.mark.parametrize(
    ("milli", "period", "quota"),
    [(0, 100000, 0), (5, 100000, 1000), (9, 100000, 1000), (10, 100000, 1000), (200, 100000, 20000),
     (500, 100000, 50000), (700, 100000, 70000), (1000, 100000, 100000), (1500, 100000, 150000),
     (500, 50000, 25000), (10, 50000, 1000), (2000, 20000, 40000)],
)
def test_milli_cpu_to_quota(milli: int, period: int, quota: int) -> None:
    assert formulas.milli_cpu_to_quota(milli, period) == quota


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (3, 1), (102, 4), (512, 20), (1024, 39), (2048, 79), (262144, 10000)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert formulas.shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("request_bytes", "capacity", "adj"),
    [
        (0, 4000000000, 999),  # no request: just below BestEffort
        (1000000000, 4000000000, 750),
        (2000000000, 4000000000, 500),
        (3990000000, 4000000000, 3),  # 3 at least, above Guaranteed's -997
        (4000000000, 4000000000, 3),
        (1, 4000000000, 999),
    ],
)
def test_burstable_oom_score_adj(request_bytes: int, capacity: int, adj: int) -> None:
    assert formulas.burstable_oom_score_adj(request_bytes, capacity) == adj


def test_limited_swap_is_the_request_share_of_swap() -> None:
    gib = 1 << 30
    assert formulas.limited_swap_bytes(gib, 8 * gib, 2 * gib) == gib // 4
    assert formulas.limited_swap_bytes(9 * gib, 8 * gib, 2 * gib) == 0
    assert formulas.limited_swap_bytes(52428800, 25276514304, 1073741824) == int(52428800 / 25276514304 * 1073741824)


def test_memory_high() -> None:
    mib = 1 << 20
    # request 100Mi, limit 200Mi, factor 0.9: 190Mi exactly, a whole number of pages.
    assert formulas.memory_high_bytes(100 * mib, 200 * mib, 0.9, 4096) == 190 * mib
    # rounded down to a page
    assert formulas.memory_high_bytes(0, 10000, 0.9, 4096) == 8192
