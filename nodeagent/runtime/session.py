"""An interactive command in a container (kubectl exec): its stdin, stdout and stderr as streams, or one
terminal (a pty the agent allocates, resized on request), and its exit code.

The runtime says how to run the command (an ExecCommand: the argv on the node, its environment, the cgroup
to move it into); this module runs it. With a cgroup, the command waits on a gate (fd 3) until it has been
moved there, so that nothing of it runs outside the container's cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nodeagent.errors import NodeAgentError

READ_CHUNK = 32 * 1024
# the agent's end of the pipe, opened by path for the `read` alone: the command inherits no descriptor of it; the
# session holds it open until it ends (the shell may get to its `read` after the agent wrote "go")
GATE = 'read -r go < /proc/{agent}/fd/{fd} || exit 125; exec "$@"'


@dataclass(frozen=True, slots=True)
class ExecCommand:
    """How a runtime runs a command in a container."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None  # None: the agent's (the runtime sets the container's)
    cgroup: Callable[[int], Awaitable[None]] | None = None  # moves the pid into the container's cgroup
    finish: Callable[[bool], None] | None = None  # once it is over, killed (True) or not: what is left to do


class StreamSession(Protocol):
    """What kubectl's streams are pumped from and to: a command (ExecSession), or a container's main process
    (attach)."""

    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None

    async def write(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int:
        """Until it is over (the command's exit code; 0 for an attach that ended)."""

    def kill(self) -> None:
        """End it early: the command is killed; an attached client detaches (the container keeps running)."""

    def close(self) -> None: ...


class ExecSession:
    """One running command. stdout is the terminal's output with a tty; stderr is then None."""

    def __init__(self, process: asyncio.subprocess.Process, stdin: asyncio.StreamWriter | None,
                 stdout: asyncio.StreamReader, stderr: asyncio.StreamReader | None, master: int | None,
                 finish: Callable[[bool], None] | None, reading: asyncio.BaseTransport | None,
                 gate: int | None) -> None:
        self.process = process
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._master = master
        self._finish = finish
        self._killed = False
        self._reading = reading  # the terminal's, closed with the session (a child may hold the terminal open)
        self._gate = gate  # open until the end: the command opens it by its path whenever its shell gets there

    async def write(self, data: bytes) -> None:
        """To its stdin, waiting while it does not read (the client waits with it); nothing once it is gone."""
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.stdin.drain()

    def close_stdin(self) -> None:
        if self.stdin is None or self.stdin.is_closing():
            return
        if self._master is not None:
            self.stdin.write(b"\x04")  # a terminal has no end of input: ^D, as a user types it
        else:
            self.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self._master is not None and 0 < width < 65536 and 0 < height < 65536:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await self.process.wait()
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it

    def kill(self) -> None:
        if self.process.returncode is None:
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """After kill() or wait(): the session's descriptors, and what the runtime has left to do."""
        if self._finish is not None:
            self._finish(self._killed)
            self._finish = None
        if self.stdin is not None:
            self.stdin.close()
        if self._reading is not None:
            self._reading.close()
        if self._master is not None:
            os.close(self._master)
            self._master = None
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None


async def start_session(command: ExecCommand, *, stdin: bool, tty: bool) -> ExecSession:
    """Start the command; NodeAgentError when it cannot be (the cgroup is gone, the argv is not found)."""
    loop = asyncio.get_running_loop()
    argv = list(command.argv)
    gate_read = gate_write = -1
    if command.cgroup is not None:
        gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
        argv = ["/bin/sh", "-c", GATE.format(agent=os.getpid(), fd=gate_read), "nodeagent-exec", *argv]
    if tty:  # a session of its own, the terminal its controlling one (setsid(1) execs: the pid stays)
        argv = ["setsid", "--ctty", *argv]
    master = slave = -1
    try:
        if tty:
            master, slave = os.openpty()
            os.set_blocking(master, False)
        pipe = asyncio.subprocess.PIPE
        stdin_fd, stdout_fd, stderr_fd = ((slave, slave, slave) if tty
                                          else (pipe if stdin else asyncio.subprocess.DEVNULL, pipe, pipe))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=stdin_fd, stdout=stdout_fd, stderr=stderr_fd, env=command.env, start_new_session=not tty)
        except OSError as exc:
            raise NodeAgentError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        if command.cgroup is not None:
            try:
                await command.cgroup(process.pid)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                raise
            os.write(gate_write, b"go\n")
        gate = gate_read if gate_read >= 0 else None
        if not tty:
            assert process.stdout is not None and process.stderr is not None
            gate_read = -1  # the session's now
            return ExecSession(process, process.stdin, process.stdout, process.stderr, None, command.finish, None,
                               gate)
        os.close(slave)
        slave = -1
        reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
        reading, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                  os.fdopen(os.dup(master), "rb", buffering=0))
        writer = None
        if stdin:
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.streams.FlowControlMixin(loop=loop), os.fdopen(os.dup(master), "wb", buffering=0))
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
        session = ExecSession(process, writer, reader, None, master, command.finish, reading, gate)
        master = gate_read = -1
        return session
    finally:
        for fd in (gate_read, gate_write, slave, master):
            if fd >= 0:
                os.close(fd)

