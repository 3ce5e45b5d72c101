"""Containers under conmon, the monitor CRI-O uses: stdio, CRI logs and the exit code outlive the agent.

    agent --spawn--> conmon --double fork--> conmon (subreaper, setsid)
                                  |-- `<runtime> create --bundle B --pid-file P <id>` -> container pid
                                  |-- holds the container's stdout/stderr, writes CRI-format logs
                                  `-- on exit: <exitDir>/<id> = exit code, then exits itself
    conmon reports the container pid on _OCI_SYNCPIPE ({"data": pid} or {"data": -1, "message": ...}).

The agent watches conmon's pid with a pidfd (it is not the agent's child), so an agent restart loses
nothing: a running conmon is watched again, a finished one has left its exit file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass

import psutil

from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import AdoptionRecord, FoundContainer
from nodeagent.runtime.procinfo import ProcessIdentity

log = logging.getLogger(__name__)

SYNC_TIMEOUT_SECONDS = 30.0
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")  # as the runtimes make them: secrets.token_hex(32)
REOPEN_LOG = b"2 0 0\n"  # on conmon's control FIFO: message type 2, reopen the log file (as CRI-O sends it)
LOG_PATH_FILE = "log-path"  # in the bundle: the attempt's log file, which names its pod, container and attempt


@dataclass(frozen=True, slots=True)
class ConmonLayout:
    """Where conmon keeps its files, under the agent's state directory."""

    state_dir: str

    @property
    def exit_dir(self) -> str:
        return os.path.join(self.state_dir, "exits")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.state_dir, "sockets")

    def bundle(self, container_id: str) -> str:
        return os.path.join(self.state_dir, "containers", container_id)

    def exit_file(self, container_id: str) -> str:
        return os.path.join(self.exit_dir, container_id)


@dataclass(frozen=True, slots=True)
class Monitored:
    """A container started under conmon: the processes to watch, checked by their start times."""

    container_id: str
    conmon: ProcessIdentity
    container: ProcessIdentity


CONMON_ELSEWHERE = ("/usr/bin/conmon", "/usr/libexec/podman/conmon")  # where packages put it off $PATH


def find_conmon() -> str:
    path = shutil.which("conmon") or next((p for p in CONMON_ELSEWHERE if os.access(p, os.X_OK)), None)
    if path is None:
        raise RuntimeStartError("RunContainerError", "conmon is not installed (Debian: apt-get install conmon)")
    return path


async def spawn(layout: ConmonLayout, *, container_id: str, name: str, runtime: str, log_path: str,
                runtime_args: tuple[str, ...] = (), env: dict[str, str] | None = None, stdin: bool = False,
                stdin_once: bool = False) -> Monitored:
    """Start conmon for a created bundle; returns once the runtime's `create` gave the container pid. With
    `stdin`, conmon holds a pipe to the container's stdin for attached clients (`stdin_once`: closed when the
    first of them detaches, as CRI-O runs conmon)."""
    bundle = layout.bundle(container_id)
    for directory in (layout.exit_dir, layout.socket_dir):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(bundle, LOG_PATH_FILE), "w") as handle:  # conmon's command line goes with it
        handle.write(log_path)
    argv = [find_conmon(), "--api-version", "1", "-c", container_id, "-u", container_id, "-n", name,
            "-r", runtime, "-b", bundle, "-p", os.path.join(bundle, "pidfile"),
            "-P", os.path.join(bundle, "conmon.pid"), "-l", f"k8s-file:{log_path}",
            "--exit-dir", layout.exit_dir, "--socket-dir-path", layout.socket_dir, "--log-level", "warning"]
    for arg in runtime_args:
        argv += ["--runtime-arg", arg]
    if stdin:
        argv += ["--stdin"] if stdin_once else ["--stdin", "--leave-stdin-open"]
    sync_read, sync_write = os.pipe2(os.O_CLOEXEC)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, pass_fds=(sync_write,), cwd=bundle, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {}), "_OCI_SYNCPIPE": str(sync_write)})
    except OSError as exc:
        os.close(sync_read)
        os.close(sync_write)
        raise RuntimeStartError("RunContainerError", f"starting conmon: {exc.strerror}") from exc
    os.close(sync_write)
    try:
        _, stderr = await process.communicate()  # conmon's first process exits once it has forked
        message = await asyncio.wait_for(asyncio.to_thread(_read_sync, sync_read), SYNC_TIMEOUT_SECONDS)
    finally:
        os.close(sync_read)
    data = message.get("data", -1)
    pid = data if isinstance(data, int) else -1
    if pid <= 0:
        detail = str(message.get("message") or stderr.decode(errors="replace")).strip() or "unknown error"
        raise RuntimeStartError("RunContainerError", detail)
    with open(os.path.join(bundle, "conmon.pid")) as handle:
        conmon_pid = int(handle.read().strip())
    return Monitored(container_id, ProcessIdentity.of(conmon_pid), ProcessIdentity.of(pid))


def _read_sync(fd: int) -> dict[str, object]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {"data": -1, "message": f"conmon said {data!r}"}
    return parsed if isinstance(parsed, dict) else {"data": -1}


def request_log_reopen(layout: ConmonLayout, container_id: str) -> bool:
    """Ask conmon to reopen its log file (it writes a new one at its path); False if no conmon listens."""
    try:
        fd = os.open(os.path.join(layout.bundle(container_id), "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: conmon has exited, ENOENT: the bundle is gone
        return False
    try:
        os.write(fd, REOPEN_LOG)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def read_exit_code(layout: ConmonLayout, container_id: str) -> int | None:
    """The container's exit code as conmon recorded it, None if it left none."""
    try:
        with open(layout.exit_file(container_id)) as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    try:
        code = int(text)
    except ValueError:
        return None
    return code if code >= 0 else None


def find_running(layout: ConmonLayout, pod_uid: str) -> list[FoundContainer]:
    """The pod's running containers, from conmon's own files and processes only: each bundle's conmon.pid
    names a conmon whose command line names the bundle's container and its log file
    (<logs>/<namespace>_<name>_<uid>/<container>/<attempt>.log); the pidfile names the container's
    process, which must be conmon's child, released (the process runtime's launcher names its bundle until
    then). Blocking: run it in a thread."""
    found = []
    for container_id in sorted(bundles(layout)):
        bundle = layout.bundle(container_id)
        try:
            conmon_pid, pid = _read_pid(os.path.join(bundle, "conmon.pid")), _read_pid(os.path.join(bundle, "pidfile"))
            argv = psutil.Process(conmon_pid).cmdline()
            child = psutil.Process(pid)
            # a launcher that still names its bundle waits to be released: a start cut short, not running
            ours = (child.ppid() == conmon_pid and _option(argv, "-c") == container_id
                    and not any(bundle in part for part in child.cmdline()))
            started = child.create_time()
        except (OSError, ValueError, psutil.Error):
            continue
        attempt = _attempt_of((_option(argv, "-l") or "").removeprefix("k8s-file:"), pod_uid)
        if not ours or attempt is None:
            continue
        monitored = Monitored(container_id, ProcessIdentity.of(conmon_pid), ProcessIdentity.of(pid))
        saved = adoption_record(monitored, dt.datetime.fromtimestamp(started, dt.UTC))
        found.append(FoundContainer(*attempt, saved))
    return found


def find_ended(layout: ConmonLayout, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
    """That attempt of the pod's container, if it ended under conmon and nobody has read its end yet: its
    bundle names its log file, conmon's exit file is there (written as conmon ends), and so is the container's
    pid file (the attempt began; its time is the start). What adopt() takes to say how it ended. Blocking."""
    for container_id in sorted(bundles(layout)):
        bundle = layout.bundle(container_id)
        try:
            with open(os.path.join(bundle, LOG_PATH_FILE)) as handle:
                log_path = handle.read(4096)
            if _attempt_of(log_path, pod_uid) != (name, attempt) or not os.path.exists(layout.exit_file(container_id)):
                continue
            pid_file = os.path.join(bundle, "pidfile")
            conmon_pid, pid = _read_pid(os.path.join(bundle, "conmon.pid")), _read_pid(pid_file)
            started = os.stat(pid_file).st_mtime
        except (OSError, ValueError):
            continue
        monitored = Monitored(container_id, ProcessIdentity.gone(conmon_pid), ProcessIdentity.gone(pid))
        return adoption_record(monitored, dt.datetime.fromtimestamp(started, dt.UTC))
    return None


def _attempt_of(log_path: str, pod_uid: str) -> tuple[str, int] | None:
    """The container and attempt a log file of the pod's is for (<logs>/<namespace>_<name>_<uid>/<container>/
    <attempt>.log); None for another pod's, or a path of another shape."""
    pod_dir, name, attempt = (os.path.basename(os.path.dirname(os.path.dirname(log_path))),
                              os.path.basename(os.path.dirname(log_path)), os.path.basename(log_path))
    if not (pod_dir.endswith(f"_{pod_uid}") and attempt.removesuffix(".log").isdigit()):
        return None
    return name, int(attempt.removesuffix(".log"))


class ConmonBundles:
    """runtime.base.ContainerBundles for a runtime whose containers run under conmon in `layout` (process,
    runc): their bundles, conmon's files beside them, and what a saved container left."""

    layout: ConmonLayout

    def bundles(self) -> set[str]:
        return bundles(self.layout)

    def abandon(self, bundle: str) -> None:
        abandon(self.layout, bundle)

    def sweep(self) -> list[str]:
        return sweep(self.layout)

    async def discard(self, saved: AdoptionRecord) -> None:
        await asyncio.to_thread(discard, self.layout, saved)


def adoption_record(monitored: Monitored, started_at: dt.datetime) -> AdoptionRecord:
    """What the agent saves of a container under conmon: its bundle, both processes, its start."""
    return AdoptionRecord(monitored.container_id, True, {
        "conmon": monitored.conmon.to_json(), "container": monitored.container.to_json(),
        "startedAt": started_at.isoformat()})


def adopted(saved: AdoptionRecord) -> tuple[Monitored, dt.datetime]:
    """The container under conmon an AdoptionRecord names, and its start."""
    details = saved.details
    return (Monitored(saved.container_id, ProcessIdentity.from_json(details["conmon"]),
                      ProcessIdentity.from_json(details["container"])),
            dt.datetime.fromisoformat(details["startedAt"]))


def bundles(layout: ConmonLayout) -> set[str]:
    """The container bundles on disk now."""
    directory = os.path.join(layout.state_dir, "containers")
    return set(os.listdir(directory)) if os.path.isdir(directory) else set()


def _read_pid(path: str) -> int:
    with open(path) as handle:
        return int(handle.read(32).strip())


def _option(argv: list[str], flag: str) -> str | None:
    return next((argv[i + 1] for i in range(len(argv) - 1) if argv[i] == flag), None)


def abandon(layout: ConmonLayout, container_id: str) -> None:
    """A start cut short (failed, cancelled, or the agent killed before it watched it): SIGKILL conmon and
    the container's first process (still waiting to be released), found by their command lines, which name
    the container's bundle (a pid file may be old and name someone else, or not be written yet: conmon
    killed between its runtime starting the launcher and writing the pid file); then remove the bundle."""
    for pid in _naming(layout.bundle(container_id).encode()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    remove(layout, container_id)


def discard(layout: ConmonLayout, saved: AdoptionRecord) -> str | None:
    """A container saved before an agent restart and never taken back: its process killed if it still runs
    (checked by its start time), then abandoned as a cut-short start is. Its ID, or None when `saved` names
    no container of this layout (a hand-edited state file: nothing is touched). Blocking: run it in a thread."""
    container_id = saved.container_id
    if not (saved.bundle and CONTAINER_ID.fullmatch(container_id)):
        return None
    try:
        container = ProcessIdentity.from_json(saved.details["container"])
    except (KeyError, TypeError, ValueError):
        container = None
    if container is not None and container.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(container.pid, signal.SIGKILL)
    abandon(layout, container_id)
    return container_id


def _naming(text: bytes) -> list[int]:
    """The processes whose command line contains `text`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if text in handle.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def remove(layout: ConmonLayout, container_id: str) -> None:
    """The container's exit file and socket entry, then its bundle: the bundle goes last, so that files a
    crash left behind still have the owner the sweep goes by."""
    for path in (layout.exit_file(container_id), os.path.join(layout.socket_dir, container_id)):
        _remove_entry(path)
    shutil.rmtree(layout.bundle(container_id), ignore_errors=True)


def sweep(layout: ConmonLayout) -> list[str]:
    """Exit files and socket entries of containers that have no bundle any more (conmon's temporary files
    `<id>.XXXXXX` included): nobody will read them. A container's bundle is made before its conmon starts
    and removed after these files, so a live container's are never taken. Returns what it removed."""
    removed = []
    for directory in (layout.exit_dir, layout.socket_dir):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if not os.path.isdir(layout.bundle(name.split(".", 1)[0])):
                _remove_entry(os.path.join(directory, name))
                removed.append(os.path.join(os.path.basename(directory), name))
    return sorted(removed)


def _remove_entry(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
