"""Which process the kernel's OOM killer chose, read from the kernel log (/dev/kmsg).

The kernel logs, for every OOM kill (Linux 5.0+):
    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a/b,task_memcg=/a/b/c,task=stress,pid=8261,uid=0
cgroup counters say *that* a container was OOM-killed; this line says *whom*, and still says it when
the cgroup is gone already (systemd removes a scope as soon as its last process ends). Where /dev/kmsg
cannot be read the victim is simply not named.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
_OOM_KILL = re.compile(r"oom-kill:.*?task_memcg=(?P<memcg>[^,]*),task=(?P<task>.*?),pid=(?P<pid>\d+)")
_PREFIX = re.compile(rb"^\d+,\d+,(?P<usec>\d+),")  # priority, sequence, microseconds since boot


@dataclass(frozen=True, slots=True)
class OOMVictim:
    cgroup: str  # the victim's memory cgroup, from the hierarchy's root
    task: str
    pid: int
    at: float = 0.0  # when, in seconds since boot (the kernel's clock, CLOCK_MONOTONIC's)

    def describe(self) -> str:
        return f"{self.task} (pid {self.pid})"


class KernelLog:
    """Reads OOM kill records logged after it was opened; keeps the recent ones to match later."""

    def __init__(self, path: str = KMSG) -> None:
        self._victims: list[OOMVictim] = []
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            log.info("%s cannot be read (%s): OOM victims will not be named", path, exc.strerror)
            self._fd = -1

    def victim_in(self, cgroup: str, *, since: float = 0.0) -> OOMVictim | None:
        """The latest OOM victim logged for this cgroup (or a cgroup below it), not before `since`
        (time.monotonic()): a container attempt's own, not one of an earlier attempt in the same cgroup."""
        self._read()
        prefix = cgroup.rstrip("/") + "/"
        for victim in reversed(self._victims):
            if victim.at < since:
                return None
            if victim.cgroup == cgroup or victim.cgroup.startswith(prefix):
                return victim
        return None

    def _read(self) -> None:
        while self._fd >= 0:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                return
            except BrokenPipeError:
                continue  # records were overwritten before we read them: go on with the next
            except OSError:
                return
            if not record:
                return
            match = _OOM_KILL.search(record.decode(errors="replace"))
            if match:
                stamp = _PREFIX.match(record)
                at = int(stamp["usec"]) / 1e6 if stamp else time.monotonic()
                self._victims.append(OOMVictim(match["memcg"], match["task"], int(match["pid"]), at))
                del self._victims[:-256]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
