"""The CLI's client tries a GET again when the agent closed it unanswered (its connection cap at work)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from nodeagent.cli.client import AgentClient
from nodeagent.errors import AgentUnavailableError


def serve(path: Path, closed_first: int) -> threading.Thread:
    """Close the first `closed_first` connections without a byte, then answer one with a JSON body."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def run() -> None:
        with server:
            for _ in range(closed_first):
                connection, _ = server.accept()
                connection.close()
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": true}')

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_get_closed_unanswered_is_tried_again(tmp_path: Path) -> None:
    thread = serve(tmp_path / "api.sock", closed_first=2)
    assert AgentClient(str(tmp_path / "api.sock"), timeout=5).get("/healthz") == {"ok": True}
    thread.join(5)


def test_three_closes_in_a_row_are_reported(tmp_path: Path) -> None:
    serve(tmp_path / "api.sock", closed_first=3)
    with pytest.raises(AgentUnavailableError, match="talking to nodeagent on"):
        AgentClient(str(tmp_path / "api.sock"), timeout=5).get("/healthz")
