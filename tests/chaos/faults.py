"""Faults from outside the agent: killed processes, removed cgroups, a full state directory, a failing URL.

Each only touches what the chaos run made: processes carrying its CHAOS_RUN token or naming its state
directory, cgroups under its cgroupRoot, its own tmpfs and its own URL server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodeagent.cgroups.detect import detect_layout
from tests.chaos.sampler import Instance, chaos_env

FILL = ".chaos-fill"


def cgroup_dir(cgroup_root: str) -> str:
    """cgroupRoot in one hierarchy where every process of the agent's pods sits (pids, or cgroup v2)."""
    layout = detect_layout()
    base = layout.v2_mount if layout.version == 2 else layout.v1_mounts.get("pids", layout.v1_mounts.get("memory"))
    assert base is not None, "no cgroup hierarchy to sample"
    return f"{base}{cgroup_root}"


def session_pids(instance: Instance, run: str) -> list[int]:
    """The processes of one container instance (its session), checked by the run's token."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            data = Path(f"/proc/{name}/stat").read_bytes()
            if int(data[data.rfind(b")") + 2:].split()[3]) == instance.sid and chaos_env(int(name), run) is not None:
                found.append(int(name))
    return found


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_container(instance: Instance, run: str) -> bool:
    """SIGKILL the container's first process (the session leader): the runtime sees it exit."""
    return instance.sid in session_pids(instance, run) and kill(instance.sid)


def kill_probe_target(instance: Instance, run: str) -> bool:
    """SIGKILL the child a liveness probe watches (`sleep`, not leading the session)."""
    for pid in session_pids(instance, run):
        if pid != instance.sid and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
            return kill(pid)
    return False


def monitors(state_dir: str) -> list[int]:
    """conmon processes of this agent (their command lines name its state directory)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
                if os.path.basename(cmdline.split(b"\0")[0]) == b"conmon" and state_dir.encode() in cmdline:
                    found.append(int(name))
    return found


def kill_monitor(instance: Instance, state_dir: str) -> bool:
    """SIGKILL the conmon of one container: named `<ns>_<pod>_<container>`, with the instance as its child."""
    pod, _, container = instance.chaos_id.partition("/")
    for pid in monitors(state_dir):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            name = cmdline[cmdline.index(b"-n") + 1]
            if name.startswith(f"default_{pod}-".encode()) and name.endswith(f"_{container}".encode()):
                return kill(pid)
    return False


def remove_cgroup(instance: Instance, cgroup_root: str) -> bool:
    """Remove the container's cgroup from outside, in every hierarchy: kill what is in it (once: a new
    attempt the agent starts meanwhile is left alone), then rmdir where it has emptied."""
    try:
        lines = Path(f"/proc/{instance.sid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    relative = next((line.split(":", 2)[2] for line in lines if cgroup_root in line), None)
    if relative is None:
        return False
    paths = [Path(f"{mount}{relative}") for mount in detect_layout().mounts]
    pids = {int(pid) for path in paths for pid in _procs(path)}
    killed = [pid for pid in pids if kill(pid)]
    deadline = time.monotonic() + 1
    while any(Path(f"/proc/{pid}").exists() for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in paths:
        with contextlib.suppress(OSError):
            os.rmdir(path)
    return bool(killed)


def _procs(path: Path) -> list[str]:
    try:
        return (path / "cgroup.procs").read_text().split()
    except OSError:
        return []


def fill(state_dir: Path) -> None:
    """Fill the state directory's filesystem (a small tmpfs) to the last byte."""
    with contextlib.suppress(OSError), open(state_dir / FILL, "ab", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)


def free(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / FILL).unlink()


class UrlServer:
    """tests.chaos.urlserver in the agent's network namespace, controlled through its directory."""

    def __init__(self, directory: Path, port: int, netns: str | None) -> None:
        self.directory = directory
        self.port = port
        self.netns = netns
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(exist_ok=True)
        self.set_mode("ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pods"

    def set_body(self, body: bytes) -> None:
        temporary = self.directory / ".body"
        temporary.write_bytes(body)
        os.replace(temporary, self.directory / "body")

    def set_mode(self, mode: str) -> None:
        (self.directory / "mode").write_text(mode)

    def start(self) -> None:
        if self.process is not None:
            return
        netns = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        root = str(Path(__file__).resolve().parents[2])
        self.process = subprocess.Popen([*netns, sys.executable, "-m", "tests.chaos.urlserver", str(self.directory),
                                         str(self.port)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready", "the URL server did not start"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
