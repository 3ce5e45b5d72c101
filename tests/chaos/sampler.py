"""Which container instances are alive, sampled continuously: the "never two at once" invariant.

Every container of a chaos run carries `CHAOS_RUN=<token>` and `CHAOS_ID=<pod name>/<container>` in its
environment (and `CHAOS_UID`, its pod's UID, from the downward API). A container instance is a session
(every runtime starts a container in a session of its own, the container's first process leading it),
so two sessions with the same CHAOS_ID alive at one moment are two copies of one container: old and new
version of a pod, a lost container started again, a duplicate. Exec probes carry the container's
environment too; their sessions are led by a process whose command line names `chaos-probe` (or the
process runtime's `nodeagent-exec`), and are not instances. A process whose command line reads empty has
released its memory on its way out (it runs no more code): it is no instance either, and a probe's leader
read that way must not be taken for one (a probe ending between the sampler's reads of its environment and
of its command line made one false "two instances" sample in a CI run).

The sampler reads only the processes in the agent's cgroupRoot (where every runtime puts containers),
every SAMPLE_SECONDS, from a thread; `leftovers()` scans the whole of /proc for the final check.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

SAMPLE_SECONDS = 0.025
PROBE_MARKS = (b"chaos-probe", b"nodeagent-exec")


@dataclass(frozen=True, slots=True)
class Instance:
    """One live copy of a container: its session, the pod UID it runs for."""

    chaos_id: str
    sid: int
    uid: str


@dataclass
class Overlap:
    """Two or more instances of one container seen alive together, over consecutive samples."""

    chaos_id: str
    instances: tuple[Instance, ...]
    first: float  # wall-clock times
    last: float
    samples: int = 1

    def __str__(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.first)) + f".{int(self.first * 1000) % 1000:03d}"
        return (f"{self.chaos_id}: {len(self.instances)} live instances from {when} for "
                f"{self.last - self.first:.2f}s ({self.samples} samples): " +
                ", ".join(f"session {i.sid} of pod {i.uid[:8]}" for i in self.instances))


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(session id, start time, comm) of a live process, None if it is gone or a zombie."""
    data = _read(f"/proc/{pid}/stat")
    if data is None:
        return None
    close = data.rfind(b")")
    fields = data[close + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[3]), int(fields[19]), data[data.find(b"(") + 1:close].decode(errors="replace")


def chaos_env(pid: int, run: str) -> dict[str, str] | None:
    """The CHAOS_* variables of a process of this run, None for any other process."""
    data = _read(f"/proc/{pid}/environ")
    if not data or f"CHAOS_RUN={run}".encode() not in data:
        return None
    found = {}
    for item in data.split(b"\0"):
        if item.startswith(b"CHAOS_"):
            key, _, value = item.decode(errors="replace").partition("=")
            found[key] = value
    return found


def is_probe_session(sid: int) -> bool:
    cmdline = _read(f"/proc/{sid}/cmdline") or b""
    return any(mark in cmdline for mark in PROBE_MARKS)


def is_exiting(pid: int) -> bool:
    """Its memory released (or gone): the process runs no more code (a zombie soon, or gone)."""
    return not _read(f"/proc/{pid}/cmdline")


class Sampler:
    """Samples the live instances under `cgroup_dirs` (one hierarchy's cgroupRoot directories)."""

    def __init__(self, run: str, cgroup_dir: str) -> None:
        self.run = run
        self.cgroup_dir = cgroup_dir
        self.samples = 0
        self.overlaps: list[Overlap] = []
        self._known: dict[tuple[int, int, str], dict[str, str]] = {}  # (pid, start, comm) -> env
        # session -> a probe's, decided when first seen (its leader alive then, in practice) and kept while any
        # process of it lives: a probe that timed out has its leader killed, and may leave children a moment
        self._probe_sessions: dict[int, bool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def instances(self) -> list[Instance]:
        """A fresh sample, taken now."""
        return self._sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(SAMPLE_SECONDS)

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for directory, _, _ in os.walk(self.cgroup_dir):
            data = _read(os.path.join(directory, "cgroup.procs"))
            if data:
                pids.update(int(line) for line in data.split())
        return pids

    def _sample(self) -> list[Instance]:
        with self._lock:  # the sampler's thread, and the engine's own looks (instances())
            return self._sample_locked()

    def _sample_locked(self) -> list[Instance]:
        found: dict[tuple[str, int], Instance] = {}
        sessions: set[int] = set()
        for pid in self._pids():
            stat = _stat(pid)
            if stat is None:
                continue
            sid, start, comm = stat
            key = (pid, start, comm)
            env = self._known.get(key)
            if env is None:  # only a container's own environment is kept: a launcher changes it by exec
                env = chaos_env(pid, self.run)
                if env is not None:
                    self._known[key] = env
            if env is None or "CHAOS_ID" not in env or is_exiting(pid):
                continue
            sessions.add(sid)
            if sid not in self._probe_sessions:
                self._probe_sessions[sid] = is_probe_session(sid)
            if self._probe_sessions[sid]:
                continue
            found[(env["CHAOS_ID"], sid)] = Instance(env["CHAOS_ID"], sid, env.get("CHAOS_UID", ""))
        for sid in set(self._probe_sessions) - sessions:  # ended: its number may lead another session later
            del self._probe_sessions[sid]
        instances = sorted(found.values(), key=lambda i: (i.chaos_id, i.sid))
        counts = Counter(i.chaos_id for i in instances)
        now = time.time()
        self.samples += 1
        for chaos_id, count in counts.items():
            if count > 1:
                self._overlap(chaos_id, tuple(i for i in instances if i.chaos_id == chaos_id), now)
        if len(self._known) > 50_000:
            self._known.clear()
        return instances

    def _overlap(self, chaos_id: str, instances: tuple[Instance, ...], now: float) -> None:
        ongoing = next((o for o in self.overlaps if o.instances == instances), None)
        if ongoing is not None and now - ongoing.last < 1.0:
            ongoing.last, ongoing.samples = now, ongoing.samples + 1
        else:
            self.overlaps.append(Overlap(chaos_id, instances, now, now))


def leftovers(run: str) -> list[str]:
    """Every process of this run still alive anywhere on the machine (the end must leave none)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(ValueError):
                env = chaos_env(int(name), run)
                if env is not None:
                    cmdline = (_read(f"/proc/{name}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"pid {name} {env.get('CHAOS_ID')}: {cmdline[:80]}")
    return found
