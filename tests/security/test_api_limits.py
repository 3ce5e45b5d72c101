"""The socket API under hostile clients (issue 12, item 14): slow or idle connections are cut off, many of
them cannot take the API (or the agent's file descriptors) away from `get pods`, bodies are refused, and a
long answer (`logs -f`) still streams."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nodeagent.apilimits import HEADER_TIMEOUT_SECONDS, KEEPALIVE_SECONDS
from tests.integration.harness import AgentHarness, wait_for

TALKER = ("kind: Pod\nmetadata: {name: talker}\nspec:\n  containers: [{name: c, image: x, "
          "command: [sh, -c, 'i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done']}]\n")


def connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(1)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


class Slowloris:
    """`count` connections sending a request's headers one byte a second, never finishing them; a connection
    the agent closes is opened again."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.sockets = [s for s in (connect(path) for _ in range(count)) if s is not None]
        self.count = count
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        request = b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100000
        sent = 0
        while not self.stopped.wait(1):
            byte = request[sent % len(request):][:1]
            sent += 1
            alive = []
            for client in self.sockets:
                try:
                    client.send(byte)
                    alive.append(client)
                except OSError:
                    client.close()
            self.sockets = alive + [s for s in (connect(self.path) for _ in range(self.count - len(alive)))
                                    if s is not None]

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        for client in self.sockets:
            client.close()


@pytest.fixture
def limited_agent(agent: AgentHarness) -> AgentHarness:
    """The agent with 400 file descriptors: a few hundred connections are enough to use them up."""
    assert agent.process is not None
    subprocess.run(["prlimit", f"--pid={agent.process.pid}", "--nofile=400:400"], check=True)
    return agent


def timed_get_pods(agent: AgentHarness) -> float:
    began = time.monotonic()
    done = agent.cli("get", "pods", check=False)
    assert done.returncode == 0, done.stderr
    assert "talker" in done.stdout
    return time.monotonic() - began


def test_slowloris_does_not_stop_get_pods_or_logs_f(limited_agent: AgentHarness) -> None:
    agent = limited_agent
    agent.write("talker.yaml", TALKER)
    wait_for(lambda: "running" in agent.container_status("talker", "c")["state"], what="talker running")
    follow = subprocess.Popen([sys.executable, "-m", "nodeagent", "logs", "-f", "talker", "--socket",
                               str(agent.socket)], stdout=subprocess.PIPE, text=True)
    attack = Slowloris(agent.socket, 600)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().startswith("line ")
        for _ in range(3):  # while the attack goes on, through several header timeouts
            time.sleep(HEADER_TIMEOUT_SECONDS)
            assert timed_get_pods(agent) < 5
            assert agent.cli("logs", "talker").stdout.startswith("line 0\n")  # it has file descriptors left
        # the stream opened before the attack still flows, longer than any header or idle timeout
        began = time.monotonic()
        lines = [follow.stdout.readline() for _ in range(5)]
        assert all(line.startswith("line ") for line in lines) and time.monotonic() - began < 5
        assert follow.poll() is None
    finally:
        attack.close()
        follow.kill()
        follow.wait()
    assert timed_get_pods(agent) < 5
    assert "connections" in agent.agent_log()  # the cap was reached and said so


def test_headers_sent_slowly_are_cut_off(agent: AgentHarness) -> None:
    client = connect(agent.socket)
    assert client is not None
    began = time.monotonic()
    with contextlib.closing(client):
        client.settimeout(HEADER_TIMEOUT_SECONDS + 10)
        try:
            for byte in b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n":
                client.send(bytes([byte]))
                time.sleep(0.5)
            closed = client.recv(1) == b""
        except OSError:
            closed = True
    assert closed
    assert HEADER_TIMEOUT_SECONDS - 1 < time.monotonic() - began < HEADER_TIMEOUT_SECONDS + 3


def test_an_idle_keep_alive_connection_is_closed(agent: AgentHarness) -> None:
    client = connect(agent.socket)
    assert client is not None
    with contextlib.closing(client):
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        client.settimeout(KEEPALIVE_SECONDS + 10)
        assert client.recv(1) == b""
    assert time.monotonic() - began < KEEPALIVE_SECONDS + 3


def test_a_request_body_is_refused(agent: AgentHarness) -> None:
    client = connect(agent.socket)
    assert client is not None
    with contextlib.closing(client):
        client.settimeout(5)
        client.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 65536)
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_delete_body_that_never_comes_is_cut_off(agent: AgentHarness) -> None:
    """kubectl's DeleteOptions are read: one announced and not sent holds the connection HEADER_TIMEOUT_SECONDS."""
    client = connect(agent.socket)
    assert client is not None
    with contextlib.closing(client):
        client.settimeout(HEADER_TIMEOUT_SECONDS + 10)
        began = time.monotonic()
        client.sendall(b"DELETE /api/v1/namespaces/default/pods/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - began < HEADER_TIMEOUT_SECONDS + 3
