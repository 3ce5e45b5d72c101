"""Which process the kernel's OOM killer chose, read from the kernel log (/dev/kmsg).

The kernel logs, for every OOM kill (Linux 5.0+):
    oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/a/b,task_memcg=/a/b/c,task=stress,pid=8261,uid=0
cgroup counters say *that* a container was OOM-killed; this line says *whom*, and still says it when
the cgroup is gone already (systemd removes a scope as soon as its last process ends). Where /dev/kmsg
cannot be read the victim is simply not named.

Which kills are an attempt's own is told by the records' sequence numbers (mark() as the attempt starts), not
their timestamps: the kernel log's clock drifts from CLOCK_MONOTONIC (here 99 ms behind after 8 hours up), which
made a container killed within that drift of its start lose its victim's name.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"
_OOM_KILL = re.compile(r"oom-kill:.*?task_memcg=(?P<memcg>[^,]*),task=(?P<task>.*?),pid=(?P<pid>\d+)")
_PREFIX = re.compile(rb"^\d+,(?P<seq>\d+),")  # priority, sequence, microseconds since boot, ...


@dataclass(frozen=True, slots=True)
class OOMVictim:
    cgroup: str  # the victim's memory cgroup, from the hierarchy's root
    task: str
    pid: int
    seq: int = 0  # the record's sequence number in the kernel log

    def describe(self) -> str:
        return f"{self.task} (pid {self.pid})"


class KernelLog:
    """Reads OOM kill records logged after it was opened; keeps the recent ones to match later."""

    def __init__(self, path: str = KMSG) -> None:
        self._victims: list[OOMVictim] = []
        self._seq = -1  # the last record's sequence number read
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            log.info("%s cannot be read (%s): OOM victims will not be named", path, exc.strerror)
            self._fd = -1

    def mark(self) -> int:
        """Where the log is now: what is logged from now on comes after this mark (a container attempt's
        start)."""
        self._read()
        return self._seq

    def victim_in(self, cgroup: str, *, after: int = -1) -> OOMVictim | None:
        """The latest OOM victim logged for this cgroup (or a cgroup below it) after the mark `after`: a container
        attempt's own, not one of an earlier attempt in the same cgroup."""
        self._read()
        prefix = cgroup.rstrip("/") + "/"
        for victim in reversed(self._victims):
            if victim.seq <= after:
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
            stamp = _PREFIX.match(record)
            if stamp:
                self._seq = max(self._seq, int(stamp["seq"]))
            match = _OOM_KILL.search(record.decode(errors="replace"))
            if match:
                self._victims.append(OOMVictim(match["memcg"], match["task"], int(match["pid"]), self._seq))
                del self._victims[:-256]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
