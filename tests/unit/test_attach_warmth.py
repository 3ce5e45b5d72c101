"""AttachWarmth: a kick keeps no-op cgroup attaches going for its hold, then stops; one failed write turns it off."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nodeagent.cgroups.detect import CgroupLayout
from nodeagent.cgroups.warmth import AttachWarmth, own_procs_file

V1 = CgroupLayout(version=1, hybrid=True, v1_mounts={"cpu": "/sys/fs/cgroup/cpu,cpuacct",
                                                    "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                                                    "pids": "/sys/fs/cgroup/pids"},
                  v2_mount="/sys/fs/cgroup/unified")
V2 = CgroupLayout(version=2, hybrid=False, v2_mount="/sys/fs/cgroup")
HYBRID_LISTING = "12:name=systemd:/system.slice/nodeagent.service\n4:cpu,cpuacct:/system.slice\n0::/system.slice/x\n"


@pytest.mark.parametrize(("layout", "listing", "expected"), [
    (V1, HYBRID_LISTING, "/sys/fs/cgroup/cpu,cpuacct/system.slice/cgroup.procs"),
    (V2, "0::/system.slice/nodeagent.service\n", "/sys/fs/cgroup/system.slice/nodeagent.service/cgroup.procs"),
    (V2, "0::/\n", "/sys/fs/cgroup/cgroup.procs"),
    (V1, "12:name=systemd:/a\n", None),
], ids=["v1: the first mounted controller", "v2", "the root cgroup", "no mounted controller"])
def test_the_file_is_the_agents_own_cgroup_in_one_hierarchy(layout: CgroupLayout, listing: str,
                                                             expected: str | None) -> None:
    assert own_procs_file(layout, listing) == expected


def wait_until_idle(warmth: AttachWarmth) -> None:
    deadline = time.monotonic() + 5
    while warmth._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not warmth._running


def test_a_kick_writes_the_agents_pid_until_its_hold_ends_and_a_later_kick_starts_again(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    warmth = AttachWarmth(lambda: str(procs), hold_seconds=0.1, interval_seconds=0.005)
    warmth.kick()
    wait_until_idle(warmth)
    first = warmth.writes
    assert 1 <= first <= 21  # ~20 in 100 ms at most, fewer on a loaded machine
    assert procs.read_text() == str(os.getpid())
    time.sleep(0.05)
    assert warmth.writes == first  # the hold is over: no more writes
    warmth.kick()
    wait_until_idle(warmth)
    assert warmth.writes > first


def test_a_failed_write_turns_it_off_for_good(tmp_path: Path) -> None:
    warmth = AttachWarmth(lambda: str(tmp_path / "missing" / "cgroup.procs"), hold_seconds=0.1)
    warmth.kick()
    wait_until_idle(warmth)
    assert warmth.writes == 0 and warmth.procs_file is None
    warmth.kick()  # off: no thread
    assert not warmth._running


def test_off_it_starts_no_thread() -> None:
    warmth = AttachWarmth(None)
    warmth.kick()
    assert not warmth._running and warmth.writes == 0
