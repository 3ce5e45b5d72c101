"""How nodeagent calls the OCI runtime binary (runc, or crun through nodeagent.runcPath): path, flags, commands.

    OCIRuntime(binary, ("--root", "<stateDir>/runc"[, "--systemd-cgroup"])).run("delete", id)

Starting a created container is runc's `start` done in-process: runc's init waits until a reader opens
`<root>/<id>/exec.fifo`, writes one byte into it and execs the container's process; `runc start` opens
the FIFO, reads that byte and removes the FIFO (which makes runc report the container running). The
agent does the same, without a runc process (~5 ms, a Go runtime's start, more on a loaded machine): it
opens the FIFO read-write, so the init's open never waits on a reader and the byte is read from the
event loop. Other runtimes (crun's init reads its FIFO instead) and a runc without that FIFO get
`<runtime> start`.

crun 1.8 refuses a cgroup v1 hybrid layout whose cgroup2 mount has controllers ("cgroups in hybrid mode
not supported, drop all controllers from cgroupv2"), which is this kind of machine. It is then called
through a wrapper nodeagent writes into `<stateDir>/bin`: a private mount namespace without the cgroup2
mount, for every command (conmon's `create` included). runc needs nothing of the kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import shutil
from dataclasses import dataclass

from nodeagent.cgroups.detect import detect_layout
from nodeagent.durable import write_atomically
from nodeagent.errors import NodeAgentError
from nodeagent.runtime.procinfo import ProcessIdentity

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
EXEC_FIFO = "exec.fifo"  # runc's, in its state directory of the container
# The capabilities in the kernel's bit order (capability.h), to read /proc/self/status' masks.
KERNEL_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
CRUN_WRAPPER = """#!/bin/sh
# nodeagent: crun refuses this hybrid cgroup layout; it runs in a private mount namespace without the
# cgroup2 mount. Written by nodeagent; do not edit.
exec unshare --mount --propagation private -- /bin/sh -c 'umount "$0" && exec "$@"' {unified} {crun} "$@"
"""


class OCIRuntimeError(NodeAgentError):
    """A runc (or crun) command that failed: the command and the runtime's own words."""


@dataclass(frozen=True, slots=True)
class OCIRuntime:
    binary: str  # what conmon runs as its runtime: runc, crun, or the crun wrapper
    global_args: tuple[str, ...]
    exec_fifos: str | None = None  # runc's --root, where each created container waits on <id>/exec.fifo

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *self.global_args, *args]

    async def start(self, container_id: str, init: ProcessIdentity, timeout: float = TIMEOUT_SECONDS) -> None:
        """Let the created container run (its init, `init`, execs the container's process)."""
        fifo = None if self.exec_fifos is None else os.path.join(self.exec_fifos, container_id, EXEC_FIFO)
        try:
            fd = None if fifo is None else os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None
        if fifo is None or fd is None:
            await self.run("start", container_id, timeout=timeout)
            return
        try:
            if not await _released(fd, init, timeout):
                raise OCIRuntimeError(f"{os.path.basename(self.binary)} start: the container's init ended "
                                      "before it was started")
            os.unlink(fifo)  # as runc start: the container is running from now on
        finally:
            os.close(fd)

    async def run(self, *args: str, timeout: float = TIMEOUT_SECONDS) -> str:
        """One command; its stdout, or OCIRuntimeError with its stderr."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(*args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise OCIRuntimeError(f"{os.path.basename(self.binary)} {args[0]}: no answer within {timeout:g}s") from None
        if process.returncode != 0:
            detail = plain_message(err.decode(errors="replace")) or f"exit code {process.returncode}"
            raise OCIRuntimeError(f"{os.path.basename(self.binary)} {args[0]}: {detail}")
        return out.decode(errors="replace")


async def _released(fd: int, init: ProcessIdentity, timeout: float) -> bool:
    """True once runc's init has written its byte into the exec FIFO (`fd`, non-blocking), False if it ended
    first; OCIRuntimeError after `timeout`."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    pidfd = init.pidfd()
    if pidfd is None:
        return _read_byte(fd)
    loop.add_reader(fd, wake)
    loop.add_reader(pidfd, wake)
    try:
        async with asyncio.timeout(timeout):
            await woken
    except TimeoutError:
        raise OCIRuntimeError(f"start: the container's init did not start within {timeout:g}s") from None
    finally:
        loop.remove_reader(fd)
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return _read_byte(fd)


def _read_byte(fd: int) -> bool:
    try:
        return bool(os.read(fd, 1))
    except BlockingIOError:
        return False


_LOGRUS_MESSAGE = re.compile(r'(?:^|\s)msg="((?:[^"\\]|\\.)*)"')


def plain_message(text: str) -> str:
    """runc's error lines are logrus records (`time="..." level=error msg="..."`): their messages, unquoted;
    other text (crun's) as it is."""
    lines = []
    for line in text.strip().splitlines():
        found = _LOGRUS_MESSAGE.search(line)
        lines.append(re.sub(r'\\(.)', r"\1", found.group(1)) if found else line.strip())
    return "; ".join(line for line in lines if line)


def find_oci_runtime(runc_path: str, *, state_dir: str, systemd_cgroup: bool) -> OCIRuntime:
    """The runtime for `nodeagent.runcPath`, with runc's state under `<stateDir>/runc`; NodeAgentError when
    it is not installed."""
    found = shutil.which(runc_path)
    if found is None:
        raise NodeAgentError(f"nodeagent.runcPath: {runc_path!r} is not an executable (Debian: apt-get install "
                             f"{os.path.basename(runc_path) or 'runc'})")
    found = os.path.abspath(found)
    root = os.path.join(state_dir, "runc")
    global_args = ("--root", root, *(("--systemd-cgroup",) if systemd_cgroup else ()))
    unified = _hybrid_unified_with_controllers()
    name = os.path.basename(os.path.realpath(found))
    if name == "runc":
        return OCIRuntime(found, global_args, exec_fifos=root)
    if name != "crun" or unified is None:
        return OCIRuntime(found, global_args)
    wrapper = os.path.join(state_dir, "bin", "nodeagent-crun")
    write_atomically(wrapper, CRUN_WRAPPER.format(unified=shlex.quote(unified), crun=shlex.quote(found)).encode(),
                     mode=0o755)
    log.info("crun refuses cgroup v1 with controllers in %s: it runs through %s, without that mount", unified,
             wrapper)
    return OCIRuntime(wrapper, global_args)


def _hybrid_unified_with_controllers() -> str | None:
    layout = detect_layout()
    if not layout.hybrid or layout.v2_mount is None:
        return None
    try:
        with open(os.path.join(layout.v2_mount, "cgroup.controllers")) as handle:
            return layout.v2_mount if handle.read().split() else None
    except OSError:
        return None


def available_capabilities() -> frozenset[str]:
    """The capabilities this agent holds (CAP_ names): a container can be given no others."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                mask = int(line.split()[1], 16)
                return frozenset(f"CAP_{name}" for bit, name in enumerate(KERNEL_CAPABILITIES) if mask >> bit & 1)
    return frozenset()
