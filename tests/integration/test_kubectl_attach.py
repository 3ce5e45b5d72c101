"""kubectl attach against the agent (the real kubectl, WebSocket and SPDY) on the process and runc runtimes:
the main process's stdout and stderr from the moment of the attach, its stdin with `stdin: true` (closed after
the first attach with stdinOnce, kept open without), and a detach that leaves the container running."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.kubectl_proxy import kubectl, kubectl_argv, kubectl_endpoint, kubectl_env
from tests.integration.registry import Registry, auth_registry, registry
from tests.integration.test_cri import configure as use_containerd
from tests.integration.test_cri import remove_sandboxes
from tests.integration.test_runc import Images, RuncAgent, images

__all__ = ["auth_registry", "containerd", "cri_images", "images", "registry"]  # the fixtures, imported for pytest

TALKER = 'i=0; while true; do i=$((i+1)); echo "tick $i"; echo "tock $i" >&2; sleep 0.2; done'
ECHO = 'while read -r line; do echo "got $line"; done; echo "stdin closed"'
TERMINAL = 'while true; do echo "size $(stty size) tty $(test -t 0 && echo yes)"; read -r -t 1 line && echo "got $line"; done'


def manifest(name: str, script: str, image: str, **fields: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": image, "command": ["sh", "-c", script], **fields}]}})


def running(agent: AgentHarness, name: str) -> None:
    wait_for(lambda: "running" in agent.container_status(name, "c")["state"], timeout=60, what=f"{name} running")


def logs(agent: AgentHarness, name: str) -> str:
    return agent.cli("logs", name, "-c", "c").stdout


def last_tick(agent: AgentHarness) -> int:
    return max((int(line.split()[1]) for line in logs(agent, "talker").splitlines() if line.startswith("tick ")),
               default=0)


def restarts(agent: AgentHarness, name: str) -> int:
    return int(agent.container_status(name, "c")["restartCount"])


class Attached:
    """A kubectl (or nodeagent) attach left running, its output in files; with `terminal` (rows, columns), its
    stdin, stdout and stderr a terminal of that size, all its output in the stdout file."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, directory: Path, stdin: bytes | None,
                 terminal: tuple[int, int] | None) -> None:
        self.out, self.err = directory / "attach.out", directory / "attach.err"
        self.out.write_bytes(b"")
        self.err.write_bytes(b"")
        self.copying: threading.Thread | None = None
        if terminal is None:
            with self.out.open("wb") as out, self.err.open("wb") as err:
                self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
            assert self.process.stdin is not None
            if stdin is not None:
                self.process.stdin.write(stdin)
                self.process.stdin.flush()
            return
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *terminal, 0, 0))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True)
        os.close(slave)
        self.copying = threading.Thread(target=self._copy, args=(master,), daemon=True)
        self.copying.start()
        if stdin is not None:
            os.write(master, stdin)

    def _copy(self, master: int) -> None:
        with self.out.open("ab", buffering=0) as out:
            try:
                while data := os.read(master, 65536):
                    out.write(data)
            except OSError:  # EIO: the terminal's other side is closed
                pass
            finally:
                os.close(master)

    def sees(self, stdout: bytes, stderr: bytes = b"") -> None:
        wait_for(lambda: stdout in self.out.read_bytes() and stderr in self.err.read_bytes(), timeout=30,
                 what=f"{stdout!r} {stderr!r} attached (out {self.out.read_bytes()[-200:]!r}, "
                      f"err {self.err.read_bytes()[-200:]!r}, exit {self.process.poll()})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        if self.copying is not None:
            self.copying.join(10)


@pytest.fixture
def attached() -> Iterator[Callable[..., Attached]]:
    started: list[Attached] = []

    def start(argv: list[str], directory: Path, *, env: dict[str, str] | None = None,
              stdin: bytes | None = None, terminal: tuple[int, int] | None = None) -> Attached:
        directory.mkdir(parents=True, exist_ok=True)
        started.append(Attached(argv, env, directory, stdin, terminal))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def check_attach(agent: AgentHarness, image: str, tmp_path: Path, attached: Callable[..., Attached], *,
                 spdy: bool = False, stdin_ends: bool = True, terminal: bool = True) -> None:
    """stdin_ends: kubectl's end of stdin reaches the container (not through containerd 1.x's v4 server);
    terminal: the runtime gives a container with tty: true its terminal (cri; process and runc refuse it)."""
    agent.write("talker.yaml", manifest("talker", TALKER, image))
    agent.write("once.yaml", manifest("once", ECHO, image, stdin=True, stdinOnce=True))
    agent.write("open.yaml", manifest("open", ECHO, image, stdin=True))
    agent.write("terminal.yaml", manifest("terminal", TERMINAL, image, stdin=True, tty=True))
    for name in ("talker", "once", "open"):
        running(agent, name)
    if not terminal:
        wait_for(lambda: agent.container_status("terminal", "c")["state"].get("waiting", {}).get("reason")
                 == "CreateContainerConfigError", what="the terminal refused")
        assert "tty: true is not supported by the" in agent.container_status(
            "terminal", "c")["state"]["waiting"]["message"]
    else:
        running(agent, "terminal")
    env = {**kubectl_env(tmp_path), **({"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"} if spdy else {})}
    with kubectl_endpoint(agent.socket) as endpoint:
        port = endpoint.port
        wait_for(lambda: last_tick(agent) >= 5, timeout=30, what="the talker's first ticks")
        before = last_tick(agent)
        talker = attached(kubectl_argv(port, tmp_path, "attach", f"talker-{NODE}", "-c", "c"), tmp_path / "t", env=env)
        talker.sees(b"tick ", b"tock ")
        first = int(talker.out.read_bytes().split(b"\n")[0].split()[1])
        assert first > before, (first, before)  # from the attach on, not the container's log from its start
        talker.stop()
        time.sleep(1)
        assert "running" in agent.container_status("talker", "c")["state"] and restarts(agent, "talker") == 0

        if stdin_ends:  # stdinOnce: the first attach's end of input is the container's
            once = kubectl(port, tmp_path, "attach", "-i", f"once-{NODE}", "-c", "c", input=b"hello\nworld\n",
                           env=env)
            assert once.returncode == 0, once
            assert b"got hello\ngot world\nstdin closed\n" in once.stdout, once

        # without stdinOnce, stdin stays open for the next attach
        for word in (b"one", b"two"):
            client = attached(kubectl_argv(port, tmp_path, "attach", "-i", f"open-{NODE}", "-c", "c"),
                              tmp_path / word.decode(), env=env, stdin=word + b"\n")
            client.sees(b"got " + word + b"\n")
            client.stop()
        time.sleep(1)
        assert "stdin closed" not in logs(agent, "open") and restarts(agent, "open") == 0

        if terminal:  # kubectl -it in a terminal of 30 rows of 100 columns: sent as a resize
            client = attached(kubectl_argv(port, tmp_path, "attach", "-it", f"terminal-{NODE}", "-c", "c"),
                              tmp_path / "terminal", env=env, stdin=b"typed\n", terminal=(30, 100))
            client.sees(b"size 30 100 tty yes")
            client.sees(b"got typed")
            client.stop()
            client = attached([sys.executable, "-m", "nodeagent", "attach", "--socket", str(agent.socket), "-i",
                               "terminal", "-c", "c"],  # no -t: the container's tty is taken, as kubectl does
                              tmp_path / "nodeagent-terminal", stdin=b"again\n", terminal=(20, 70))
            client.sees(b"size 20 70 tty yes")
            client.sees(b"got again")
        assert set(endpoint.upgrades) == {"SPDY/3.1" if spdy else "websocket"}


def test_kubectl_attach_on_the_process_runtime(harness: AgentHarness, tmp_path: Path,
                                               attached: Callable[..., Attached]) -> None:
    harness.start()
    check_attach(harness, "busybox", tmp_path, attached, terminal=False)


def test_kubectl_attach_over_the_plain_spdy_upgrade(harness: AgentHarness, tmp_path: Path,
                                                    attached: Callable[..., Attached]) -> None:
    harness.start()
    check_attach(harness, "busybox", tmp_path, attached, spdy=True, terminal=False)


def test_kubectl_attach_on_runc(tmp_path: Path, registry: Registry, auth_registry: Registry, images: Images,
                                attached: Callable[..., Attached]) -> None:
    (tmp_path / "agent").mkdir()
    agent = RuncAgent(tmp_path / "agent", [registry, auth_registry])
    try:
        agent.harness.start()
        check_attach(agent.harness, images.busybox.reference, tmp_path, attached, terminal=False)
    finally:
        agent.clean_up()


def test_kubectl_attach_on_cri_through_containerds_streaming_server(harness: AgentHarness, containerd: Containerd,
                                                                    tmp_path: Path,
                                                                    attached: Callable[..., Attached]) -> None:
    use_containerd(harness, containerd)
    harness.start()
    try:
        check_attach(harness, BUSYBOX_IMAGE, tmp_path, attached, stdin_ends=False)
    finally:
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups


def test_nodeagent_attach_over_the_socket(harness: AgentHarness, tmp_path: Path,
                                          attached: Callable[..., Attached]) -> None:
    harness.start()
    harness.write("once.yaml", manifest("once", ECHO, "busybox", stdin=True, stdinOnce=True))
    harness.write("talker.yaml", manifest("talker", TALKER, "busybox"))
    running(harness, "once")
    running(harness, "talker")
    nodeagent = [sys.executable, "-m", "nodeagent", "attach", "--socket", str(harness.socket)]
    once = subprocess.run([*nodeagent, "-i", "once"], input=b"hi\n", capture_output=True, timeout=30)
    assert (once.returncode, once.stdout) == (0, b"got hi\nstdin closed\n"), once
    talker = attached([*nodeagent, "talker", "-c", "c"], tmp_path / "t")
    talker.sees(b"tick ", b"tock ")
    missing = subprocess.run([*nodeagent, "talker", "-c", "nosuch"], capture_output=True, timeout=30)
    assert missing.returncode == 1 and b"container nosuch is not valid" in missing.stderr, missing
