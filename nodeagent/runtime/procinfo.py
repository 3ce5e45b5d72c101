"""A process named by its pid *and* its start time, so that a reused pid is never mistaken for it."""

from __future__ import annotations

import os
from dataclasses import dataclass


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        ticks = start_ticks(pid)
        return cls(pid, -1 if ticks is None else ticks)

    @classmethod
    def gone(cls, pid: int) -> ProcessIdentity:
        """A process known to have ended: never alive, whatever now has its pid."""
        return cls(pid, -1)

    def alive(self) -> bool:
        """The same process still exists (not just a process with the same pid)."""
        return self.start_ticks >= 0 and start_ticks(self.pid) == self.start_ticks

    def pidfd(self) -> int | None:
        """A pidfd for this very process, or None if it is gone (checked after opening, against reuse)."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return None
        if not self.alive():
            os.close(fd)
            return None
        return fd

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "startTicks": self.start_ticks}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> ProcessIdentity:
        return cls(int(data["pid"]), int(data["startTicks"]))
