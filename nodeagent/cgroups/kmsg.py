"""Which process the kernel's OOM killer chose, read from the kernel log (/dev/kmsg).

The kernel logs, for every OOM kill (Linux 5.0+):
    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a/b,task_memcg=/a/b/c,task=stress,pid=8261,uid=0
cgroup counters say *that* a container was OOM-killed; this line says *whom*. Where /dev/kmsg cannot
be read the victim is simply not named.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
_OOM_KILL = re.compile(r"oom-kill:.*?task_memcg=(?P<memcg>[^,]*),task=(?P<task>.*?),pid=(?P<pid>\d+)")


@dataclass(frozen=True, slots=True)
class OOMVictim:
    cgroup: str  # the victim's memory cgroup, from the hierarchy's root
    task: str
    pid: int

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

    def victim_in(self, cgroup: str) -> OOMVictim | None:
        """The latest OOM victim logged for this cgroup (or a cgroup below it)."""
        self._read()
        prefix = cgroup.rstrip("/") + "/"
        for victim in reversed(self._victims):
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
                self._victims.append(OOMVictim(match["memcg"], match["task"], int(match["pid"])))
                del self._victims[:-256]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
