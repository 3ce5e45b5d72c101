"""The client of conmon's attach socket (nodeagent.runtime.conmon_attach) against the other end of a SEQPACKET
socket pair, speaking as conmon does: output packets prefixed with their pipe, stdin as plain packets."""

from __future__ import annotations

import asyncio
import socket

from nodeagent.runtime.conmon_attach import STDIN_PACKET, ConmonAttach


async def exchange(*, stdin: bool) -> tuple[bytes, bytes, int, list[bytes]]:
    ours, conmon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    attached = ConmonAttach(ours, stdin=stdin)
    try:
        conmon.sendall(b"\x02out 1\n")
        conmon.sendall(b"\x03err 1\n")
        conmon.sendall(b"\x01not output\n")  # no pipe conmon writes to clients: dropped
        conmon.sendall(b"\x02out 2\n")
        await attached.write(b"x" * (STDIN_PACKET + 10))
        attached.close_stdin()
        received = []
        conmon.setblocking(False)
        try:
            while packet := conmon.recv(1 << 16):  # b"": the client shut its sending side down
                received.append(packet)
            received.append(b"<end of stdin>")
        except BlockingIOError:  # nothing more, and the client's side still open
            pass
        conmon.close()  # the container exited
        code = await asyncio.wait_for(attached.wait(), 5)
        assert attached.stderr is not None
        return await attached.stdout.read(), await attached.stderr.read(), code, received
    finally:
        attached.close()
        conmon.close()


def test_output_is_split_by_pipe_and_stdin_sent_in_packets_conmon_reads_whole() -> None:
    out, err, code, received = asyncio.run(exchange(stdin=True))
    assert (out, err, code) == (b"out 1\nout 2\n", b"err 1\n", 0)
    assert received == [b"x" * STDIN_PACKET, b"x" * 10, b"<end of stdin>"]


def test_without_stdin_nothing_is_written_and_the_socket_stays_open_for_conmon() -> None:
    out, _, _, received = asyncio.run(exchange(stdin=False))
    assert out == b"out 1\nout 2\n" and received == []
