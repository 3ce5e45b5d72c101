"""AttachWarmth on the real kernel: its writes into the agent's own cgroup succeed, and they move nothing.

A child Python process stands for the agent, in a cgroup of the test's own (below the harness's cgroupRoot),
so that the writes touch nothing else on the machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodeagent.plan.pod import CgroupPlan
from tests.integration.harness import AgentHarness

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import sys, time
from nodeagent.cgroups.detect import detect_layout
from nodeagent.cgroups.warmth import kept_warm
sys.stdin.readline()
warmth = kept_warm(detect_layout())
warmth.hold_seconds = 0.2
warmth.kick()
time.sleep(0.4)
print(warmth.writes)
print(open('/proc/self/cgroup').read(), end='')
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="writes cgroup.procs files: needs root")
def test_kept_warm_the_writes_succeed_and_leave_the_process_where_it_is(harness: AgentHarness) -> None:
    path = f"{harness.cgroup_root}/warmth"
    asyncio.run(harness.cgroups.apply([CgroupPlan("pod", path)]))
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        asyncio.run(harness.cgroups.attach(path, child.pid))
        before = Path(f"/proc/{child.pid}/cgroup").read_text()
        output, _ = child.communicate("go\n", timeout=30)
    finally:
        child.kill()
        child.wait()
    writes, after = output.split("\n", 1)
    assert int(writes) >= 2  # up to ~40 in 200 ms, each one succeeded (a failure turns it off)
    assert after == before and path in after
