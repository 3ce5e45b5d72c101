"""The time from asking for a pod to its container's first instruction, told by a FIFO the container writes
(the benchmarks' shared stopwatch: ms resolution, no clock shared with the container needed)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from pathlib import Path

FIRST_INSTRUCTION_TIMEOUT = 30.0
# A start measured after a quiet spell, as a user's pod starts: nothing of the start before still runs (its
# conmon's move, its saves), and the kernel's cgroup attach lock has gone back to its idle mode, which makes
# the first attach after it wait for an RCU grace period (8-20 ms here; nodeagent.cgroups.warmth).
QUIET_SECONDS = 0.3


def time_to_first_instruction(fifo: Path, ask: Callable[[], None], check: Callable[[], None] = lambda: None) -> float:
    """Seconds from ask(), after a quiet spell, to the first bytes in `fifo` (opened before, so no write is
    missed); check() raises when waiting is pointless."""
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    time.sleep(QUIET_SECONDS)
    try:
        started = time.monotonic()
        ask()
        while time.monotonic() - started < FIRST_INSTRUCTION_TIMEOUT:
            check()
            readable, _, _ = select.select([fd], [], [], 0.5)
            if readable and os.read(fd, 64):
                return time.monotonic() - started
            if readable:
                time.sleep(0.0005)  # end of file with no writer yet: Linux says readable
        raise TimeoutError(f"nothing in {fifo} within {FIRST_INSTRUCTION_TIMEOUT:.0f}s")
    finally:
        os.close(fd)
