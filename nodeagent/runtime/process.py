"""The `process` runtime: containers as host processes, each in its own cgroup, session and mounts.

A container starts as a small POSIX shell launcher (fixed text; values only ever arrive as
arguments) that waits on its stdin until the agent has moved it into its cgroups and set its
oom_score_adj, then bind-mounts the volumes in a private mount namespace, drops to the container's
user and execs the command. So the command's first instruction already runs in its cgroup.

    agent --spawn--> [unshare -m] sh launcher (blocked)  --attach cgroup, oom_score_adj, "go"-->
    mounts, cd, [setpriv], exec command

The agent watches the process through a pidfd, copies its output into CRI-format logs and decides
OOM kills from the cgroup's counters. cgroup v1 has no memory.oom.group, so when the kernel
OOM-kills one process of a container the agent kills the rest, as v2 does with oom.group = 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable

from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.cgroups.oom import OOMWatch
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.runtime.base import ContainerExit, ContainerSpec, RunningContainer
from nodeagent.runtime.logs import StreamSplitter

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# $1 workdir, $2 uid, $3 gid, $4 groups ("" = none), $5 mount count, then (source target ro|rw)...,
# then the command. Nothing here is ever built from a manifest: values come in as arguments.
LAUNCHER = r"""
read -r go || exit 125
exec </dev/null
workdir=$1 uid=$2 gid=$3 groups=$4 n=$5
shift 5
while [ "$n" -gt 0 ]; do
  mount --bind -- "$1" "$2" || exit 125
  if [ "$3" = ro ]; then mount -o remount,bind,ro -- "$2" || exit 125; fi
  shift 3
  n=$((n - 1))
done
cd -- "$workdir" || exit 125
if [ -n "$uid" ]; then
  if [ -n "$groups" ]; then exec setpriv --reuid="$uid" --regid="$gid" --groups="$groups" -- "$@"; fi
  exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
fi
exec "$@"
"""
EXIT_GRACE_SECONDS = 2.0
OOM_RECHECKS = 50


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ProcessRuntime:
    name = "process"

    host_mount_points = True  # volumes are bind-mounted over paths of the host's own tree

    def __init__(self, cgroups: CgroupDriver, kernel_log: KernelLog | None = None) -> None:
        self.cgroups = cgroups
        self.kernel_log = kernel_log
        self._oom_adj_warned = False

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        env = container_env(spec)
        argv = launcher_argv(spec, env)
        os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        go_read, go_write = os.pipe2(os.O_CLOEXEC)
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            process = subprocess.Popen(
                argv, stdin=go_read, stdout=out_write, stderr=err_write, env=env, cwd="/",
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            for fd in (log_fd, go_read, go_write, out_read, out_write, err_read, err_write):
                os.close(fd)
            raise RuntimeStartError("RunContainerError", f"starting the launcher: {exc.strerror}") from exc
        for fd in (go_read, out_write, err_write):
            os.close(fd)
        container = ProcessContainer(spec, process.pid, self.cgroups, self.kernel_log, log_fd, out_read, err_read)
        try:
            self.cgroups.attach(spec.cgroup.path, process.pid)
            self._set_oom_score_adj(process.pid, spec.oom_score_adj)
            container.watch_oom()
            os.write(go_write, b"go\n")
        except (OSError, NodeAgentError) as exc:
            container.kill()
            await container.wait()
            raise RuntimeStartError("RunContainerError", f"preparing the process: {exc}") from exc
        finally:
            os.close(go_write)
        container.started_at = now()
        return container

    def _set_oom_score_adj(self, pid: int, value: int | None) -> None:
        """Set it; where the kernel refuses (no CAP_SYS_RESOURCE for a negative value), keep the
        nearest allowed value, the inherited one, and say so once."""
        if value is None:
            return
        path = f"/proc/{pid}/oom_score_adj"
        try:
            with open(path, "w") as handle:
                handle.write(str(value))
        except PermissionError:
            with open(path) as handle:
                kept = handle.read().strip()
            if not self._oom_adj_warned:
                log.warning("oom_score_adj %d refused by the kernel (no CAP_SYS_RESOURCE?): containers keep %s, "
                            "the nearest allowed value; the plan's value stays what the kubelet would set",
                            value, kept)
                self._oom_adj_warned = True


def container_env(spec: ContainerSpec) -> dict[str, str]:
    """The container's environment: PATH and HOSTNAME as a container runtime gives them, then the pod's."""
    return {"PATH": DEFAULT_PATH, "HOSTNAME": spec.hostname, **spec.env}


def launcher_argv(spec: ContainerSpec, env: dict[str, str]) -> list[str]:
    """The launcher's command line, or RuntimeStartError for what would fail to start anyway."""
    if not spec.command:
        raise RuntimeStartError(
            "CreateContainerError",
            "the process runtime needs `command`: the image's entrypoint is not known without the image "
            f"(image {spec.image!r} is only recorded)")
    command = [*spec.command, *spec.args]
    executable = command[0] if "/" in command[0] else shutil.which(command[0], path=env.get("PATH", DEFAULT_PATH))
    if executable is None or not os.access(executable, os.X_OK):
        raise RuntimeStartError("RunContainerError", f'exec: "{command[0]}": executable file not found in $PATH')
    workdir = spec.working_dir or "/"
    if not os.path.isdir(workdir):
        raise RuntimeStartError("RunContainerError", f'chdir to cwd ("{workdir}") set in config failed: '
                                                     "no such file or directory")
    uid = "" if spec.run_as_user is None else str(spec.run_as_user)
    gid = str(spec.run_as_group if spec.run_as_group is not None else (spec.run_as_user or 0)) if uid else ""
    groups = ",".join(str(g) for g in spec.supplemental_groups)
    mounts = [value for m in spec.mounts for value in (m.host_path, m.container_path, "ro" if m.read_only else "rw")]
    prefix = ["unshare", "--mount", "--propagation", "private"] if spec.mounts else []
    return [*prefix, "/bin/sh", "-c", LAUNCHER, "nodeagent-launch", workdir, uid, gid, groups,
            str(len(spec.mounts)), *mounts, *command]


class ProcessContainer:
    """A started process: its exit through a pidfd, its output into the log, its OOM kills."""

    def __init__(self, spec: ContainerSpec, pid: int, cgroups: CgroupDriver, kernel_log: KernelLog | None,
                 log_fd: int, out_fd: int, err_fd: int) -> None:
        self.spec = spec
        self.pid = pid
        self.container_id = f"process://{secrets.token_hex(32)}"
        self.started_at = now()
        self._cgroups = cgroups
        self._kernel_log = kernel_log
        self._loop = asyncio.get_running_loop()
        self._log_fd = log_fd
        self._exited: asyncio.Future[tuple[int, dt.datetime]] = self._loop.create_future()
        self._streams_open = 2
        self._streams_done = asyncio.Event()
        self._oom_watch: OOMWatch | None = None
        self._oom_baseline = cgroups.oom_kills(spec.cgroup.path)
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        for fd, stream in ((out_fd, "stdout"), (err_fd, "stderr")):
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._pump(fd, StreamSplitter(stream)))

    def watch_oom(self) -> None:
        self._oom_watch = self._cgroups.watch_oom(self.spec.cgroup.path, self._on_oom_event)

    def _on_oom_event(self, rechecks: int = OOM_RECHECKS) -> None:
        """v1 signals the OOM before the kill lands in the counter: look again for a few ms."""
        if self._exited.done():
            return
        try:
            killed = self._cgroups.oom_kills(self.spec.cgroup.path) > self._oom_baseline
        except NodeAgentError:
            return  # the cgroup is going away
        if not killed:
            if rechecks > 0:
                self._loop.call_later(0.002, self._on_oom_event, rechecks - 1)
            return
        if self._cgroups.version == 1:
            log.info("container=%s pod=%s/%s: OOM kill in its cgroup, killing the rest of it (oom.group)",
                     self.spec.name, self.spec.pod_namespace, self.spec.pod_name)
            self.kill()

    def _pump(self, fd: int, splitter: StreamSplitter) -> Callable[[], None]:
        def readable() -> None:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if chunk:
                self._write_log(splitter.feed(chunk, now()))
                return
            self._write_log(splitter.finish(now()))
            self._loop.remove_reader(fd)
            os.close(fd)
            self._streams_open -= 1
            if self._streams_open == 0:
                self._streams_done.set()
        return readable

    def _write_log(self, records: bytes) -> None:
        if records:
            try:
                os.write(self._log_fd, records)
            except OSError as exc:
                log.warning("container=%s: writing its log: %s", self.spec.name, exc.strerror)

    def _on_exit(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if not self._exited.done():
            self._exited.set_result((status, now()))

    async def wait(self) -> ContainerExit:
        status, finished_at = await asyncio.shield(self._exited)
        # The container is its main process: what it leaves behind goes with it.
        self.kill()
        try:
            await asyncio.wait_for(self._streams_done.wait(), EXIT_GRACE_SECONDS)
        except TimeoutError:
            log.warning("container=%s: output still open %.0fs after exit", self.spec.name, EXIT_GRACE_SECONDS)
        self._close()
        oom_killed = self._cgroups.oom_kills(self.spec.cgroup.path) > self._oom_baseline
        victim = None
        if oom_killed and self._kernel_log is not None:
            found = self._kernel_log.victim_in(self.spec.cgroup.path)
            victim = found.describe() if found else None
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        exit_code = 128 + signum if signum else os.WEXITSTATUS(status)
        return ContainerExit(exit_code=exit_code, finished_at=finished_at, oom_killed=oom_killed, signal=signum,
                             oom_victim=victim)

    def _close(self) -> None:
        if self._oom_watch is not None:
            self._oom_watch.close()
            self._oom_watch = None
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1

    def signal(self, signum: int) -> None:
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self._cgroups.kill(self.spec.cgroup.path)
        except NodeAgentError as exc:
            log.debug("container=%s: killing its cgroup: %s", self.spec.name, exc)
