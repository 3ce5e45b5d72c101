"""Keeps moving a process into a cgroup fast while containers start.

Every write to a cgroup.procs file (runc's, systemd's, the agent's own) takes the kernel's global
cgroup_threadgroup_rwsem for writing. Unless the cgroup file systems are mounted with `favordynmods`,
the first writer after a quiet spell waits for an RCU grace period (8-20 ms on the test machine), and
the lock stays in its writer-friendly mode for one more grace period after the last writer is done.
That wait was ~11 ms of `runc create`'s ~28 ms, on the path from a manifest to its container.

So a start kicks AttachWarmth: a thread of the agent moves the agent into the cgroup it is in already
(a write that changes nothing) every few ms, until HOLD_SECONDS after the last kick. The kernel waits
for the grace period holding cgroup_mutex, which every cgroup mkdir takes too: the kick comes after the
container's cgroup is made, so that the wait passes while the agent mounts the root, writes the bundle
and starts conmon, and while runc starts up. The container's move then finds the lock ready. The
price, for those 100 ms: each no-op write (~0.05 ms) holds off forks on the machine, and forks take
the lock's slower shared path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from nodeagent.cgroups.detect import CgroupLayout

log = logging.getLogger(__name__)

HOLD_SECONDS = 0.1  # after the last kick: a start's steps up to its container's move, with room for load
INTERVAL_SECONDS = 0.005  # well within a grace period (8-20 ms here), after which the lock would cool


def own_procs_file(layout: CgroupLayout, listing: str) -> str | None:
    """The cgroup.procs file of the cgroup a process is in (`listing`: its /proc/PID/cgroup), in one hierarchy:
    the v2 one, or on v1 the first whose controller is mounted."""
    for line in listing.splitlines():
        _, controllers, path = line.split(":", 2)
        if layout.version == 2:
            mount = layout.v2_mount if controllers == "" else None
        else:
            mount = next((layout.v1_mounts[c] for c in controllers.split(",") if c in layout.v1_mounts), None)
        if mount is not None:
            return os.path.join(mount, path.lstrip("/"), "cgroup.procs")
    return None


def kept_warm(layout: CgroupLayout) -> AttachWarmth:
    """An AttachWarmth that writes into the agent's own cgroup, as /proc/self/cgroup names it at each write:
    the write must never move the agent."""
    def procs_file() -> str | None:
        with open("/proc/self/cgroup") as listing:
            return own_procs_file(layout, listing.read())

    return AttachWarmth(procs_file)


class AttachWarmth:
    """kick(): the cgroup attach lock kept ready for HOLD_SECONDS, by writing this process's pid into
    `procs_file()`. A write that fails (no root, a threaded cgroup) turns it off for good: the starts are slower,
    never wrong."""

    def __init__(self, procs_file: Callable[[], str | None] | None, *, hold_seconds: float = HOLD_SECONDS,
                 interval_seconds: float = INTERVAL_SECONDS) -> None:
        self.procs_file = procs_file  # None: off (fakes, tests)
        self.hold_seconds = hold_seconds
        self.interval_seconds = interval_seconds
        self.writes = 0
        self._lock = threading.Lock()
        self._until = 0.0
        self._running = False

    def kick(self) -> None:
        """A container is about to start: keep the lock ready from now until HOLD_SECONDS from now."""
        if self.procs_file is None:
            return
        with self._lock:
            self._until = time.monotonic() + self.hold_seconds
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="cgroup-attach-warmth", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self.procs_file is None or time.monotonic() >= self._until:
                    self._running = False
                    return
            self._attach_self(self.procs_file)
            time.sleep(self.interval_seconds)

    def _attach_self(self, procs_file: Callable[[], str | None]) -> None:
        try:
            procs = procs_file()
            if procs is None:
                raise OSError("no mounted cgroup hierarchy lists the agent")
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        except OSError as exc:
            log.info("cgroup attaches are not kept warm: %s", exc)
            self.procs_file = None
            return
        self.writes += 1
