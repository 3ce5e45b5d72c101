"""kubectl attach for containers under conmon: a client of conmon's attach socket, `<bundle>/attach`.

The socket is SOCK_SEQPACKET; each packet from conmon is one read of the container's output, its first byte
the pipe it came from (2 stdout, 3 stderr); what a client sends is written to the container's stdin (conmon
holds a pipe to it with `-i`, the container's `stdin: true`). A client that shuts down its sending side ends
the container's stdin unless conmon runs with `--leave-stdin-open` (stdinOnce false). conmon closes every
attached client when the container exits.

The socket's path may be longer than a Unix socket address allows: it is reached through /proc/self/fd and
the bundle directory opened with O_PATH, as podman does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from nodeagent.errors import NodeAgentError

STDOUT_PIPE, STDERR_PIPE = 2, 3
PACKET = 64 * 1024  # larger than any packet conmon sends (its reads of the container's output)
STDIN_PACKET = 8 * 1024  # conmon reads its clients' packets into 32 KiB; a longer packet would be cut


class ConmonAttach:
    """One attached client: the container's stdout and stderr from now on, its stdin when asked for."""

    def __init__(self, sock: socket.socket, *, stdin: bool) -> None:
        loop = asyncio.get_running_loop()
        self._sock = sock
        self._stdin = stdin
        self.stdout = asyncio.StreamReader(loop=loop)
        self.stderr: asyncio.StreamReader | None = asyncio.StreamReader(loop=loop)
        self._reading = loop.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.stderr is not None
        try:
            while packet := await loop.sock_recv(self._sock, PACKET):
                if packet[0] == STDOUT_PIPE:
                    self.stdout.feed_data(packet[1:])
                elif packet[0] == STDERR_PIPE:
                    self.stderr.feed_data(packet[1:])
        except OSError:
            pass
        finally:
            self.stdout.feed_eof()
            self.stderr.feed_eof()

    async def write(self, data: bytes) -> None:
        if not self._stdin or self._sock.fileno() < 0:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            for at in range(0, len(data), STDIN_PACKET):
                await loop.sock_sendall(self._sock, data[at:at + STDIN_PACKET])

    def close_stdin(self) -> None:
        """The client's end of input: conmon closes the container's stdin (stdinOnce) or keeps it open."""
        if self._stdin and self._sock.fileno() >= 0:
            self._stdin = False
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def resize(self, width: int, height: int) -> None:
        """Nothing to resize: containers get no terminal (tty: true is refused)."""

    async def wait(self) -> int:
        """Until conmon closes the connection (the container exited): an attach ends with success."""
        await asyncio.shield(self._reading)
        return 0

    def kill(self) -> None:
        """Detach; the container keeps running."""
        self.close()

    def close(self) -> None:
        self._reading.cancel()
        self._sock.close()


async def attach(bundle: str, *, stdin: bool) -> ConmonAttach:
    """Connect to the container's conmon; NodeAgentError when nothing listens there (it has exited)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        directory = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{directory}/attach")
        finally:
            os.close(directory)
    except OSError as exc:
        sock.close()
        raise NodeAgentError(f"cannot attach to the container: its monitor's socket {os.path.join(bundle, 'attach')}: "
                             f"{exc.strerror}") from exc
    return ConmonAttach(sock, stdin=stdin)
