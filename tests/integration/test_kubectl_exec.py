"""kubectl exec against the agent (the real kubectl, over the WebSocket protocol kubectl 1.30+ speaks), on
the process and runc runtimes: exit codes, stdin, a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.kubectl_proxy import kubectl as run_kubectl
from tests.integration.kubectl_proxy import kubectl_endpoint
from tests.integration.registry import Registry, auth_registry, registry
from tests.integration.test_cri import configure as use_containerd
from tests.integration.test_cri import remove_sandboxes
from tests.integration.test_runc import Images, RuncAgent, images

__all__ = ["auth_registry", "containerd", "cri_images", "images", "registry"]  # the fixtures, imported for pytest


POD = f"shell-{NODE}"  # a static pod is named after its node, as the kubelet names mirror pods


def sleeper(image: str = "busybox") -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"}, "spec": {
        "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"],
                        "env": [{"name": "GREETING", "value": "hello"}]}]}})


def running(agent: AgentHarness) -> None:
    wait_for(lambda: "running" in agent.container_status("shell", "c")["state"], timeout=60, what="shell running")


def check_exec(agent: AgentHarness, tmp_path: Path, *, stdin_ends: bool = True, spdy: bool = False) -> None:
    """stdin_ends: kubectl's end of stdin reaches the command (not through containerd 1.x's v4 server);
    spdy: kubectl as before 1.30, with the plain SPDY/3.1 upgrade."""
    reader = "tr a-z A-Z" if stdin_ends else "head -n 1 | tr a-z A-Z"
    env = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"} if spdy else {}
    with kubectl_endpoint(agent.socket) as endpoint:
        port = endpoint.port

        def kubectl(port: int, cache: Path, *args: str, **options: Any) -> subprocess.CompletedProcess[bytes]:
            return run_kubectl(port, cache, *args, env=env, **options)

        done = kubectl(port, tmp_path, "exec", POD, "--", "sh", "-c", 'echo "$GREETING out"; echo err >&2')
        assert (done.returncode, done.stdout, done.stderr) == (0, b"hello out\n", b"err\n"), done
        failed = kubectl(port, tmp_path, "exec", POD, "--", "sh", "-c", "exit 3")
        assert failed.returncode == 3, failed
        piped = kubectl(port, tmp_path, "exec", "-i", POD, "--", "sh", "-c", f"{reader}; exit 7",
                        input=b"from stdin\n")
        assert (piped.returncode, piped.stdout) == (7, b"FROM STDIN\n"), piped
        # kubectl sends its terminal's size once the command may have started: it is waited for
        sized = 'for i in $(seq 50); do s=$(stty size 2>/dev/null); [ "$s" = "30 100" ] && break; sleep 0.1; done'
        terminal = kubectl(port, tmp_path, "exec", "-it", POD, "--", "sh", "-c",
                           f'test -t 0 || exit 1; {sized}; echo "size:$s"; exit 5', tty=True, input=b"")
        assert terminal.returncode == 5, terminal
        assert b"size:30 100" in terminal.stdout, terminal.stdout
        missing = kubectl(port, tmp_path, "exec", "nosuchpod", "--", "true")
        assert missing.returncode != 0 and b"not found" in missing.stderr, missing
        assert set(endpoint.upgrades) == {"SPDY/3.1" if spdy else "websocket"}


def test_kubectl_exec_on_the_process_runtime(harness: AgentHarness, tmp_path: Path) -> None:
    harness.start()
    harness.write("shell.yaml", sleeper())
    running(harness)
    check_exec(harness, tmp_path)


def test_kubectl_exec_over_the_plain_spdy_upgrade(harness: AgentHarness, tmp_path: Path) -> None:
    """As kubectl before 1.30 (or with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false) execs: SPDY/3.1 streams."""
    harness.start()
    harness.write("shell.yaml", sleeper())
    running(harness)
    check_exec(harness, tmp_path, spdy=True)


@pytest.fixture
def runc_agent(tmp_path: Path, registry: Registry, auth_registry: Registry) -> Iterator[AgentHarness]:
    (tmp_path / "agent").mkdir()
    agent = RuncAgent(tmp_path / "agent", [registry, auth_registry])
    try:
        agent.harness.start()
        yield agent.harness
    finally:
        agent.clean_up()


def test_kubectl_exec_on_runc(runc_agent: AgentHarness, images: Images, tmp_path: Path) -> None:
    runc_agent.write("shell.yaml", sleeper(images.busybox.reference))
    running(runc_agent)
    check_exec(runc_agent, tmp_path)


def test_nodeagent_exec_over_the_socket(harness: AgentHarness) -> None:
    harness.start()
    harness.write("shell.yaml", sleeper())
    running(harness)

    def nodeagent_exec(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "nodeagent", "exec", "--socket", str(harness.socket), *args]
        return subprocess.run(argv, input=input, capture_output=True, timeout=30)

    done = nodeagent_exec("shell", "--", "sh", "-c", 'echo "$GREETING"; echo err >&2; exit 4')
    assert (done.returncode, done.stdout, done.stderr) == (4, b"hello\n", b"err\n"), done
    piped = nodeagent_exec("-i", "shell", "-c", "c", "--", "tr", "a-z", "A-Z", input=b"piped\n")
    assert (piped.returncode, piped.stdout) == (0, b"PIPED\n"), piped
    missing = nodeagent_exec("shell", "-c", "nosuch", "--", "true")
    assert missing.returncode == 1 and b"container nosuch is not valid" in missing.stderr, missing
    sized = 'for i in $(seq 50); do s=$(stty size); [ "$s" = "30 100" ] && break; sleep 0.1; done'
    command = shlex.join([sys.executable, "-m", "nodeagent", "exec", "--socket", str(harness.socket), "-it", "shell",
                          "--", "sh", "-c", f'test -t 0 || exit 1; {sized}; echo "size:$s"; exit 5'])
    terminal = subprocess.run(["script", "-qec", f"stty rows 30 cols 100; {command}", "/dev/null"],
                              capture_output=True, timeout=30, input=b"")
    assert terminal.returncode == 5 and b"size:30 100" in terminal.stdout, terminal


def test_kubectl_exec_on_cri_through_containerds_streaming_server(harness: AgentHarness,
                                                                  containerd: Containerd, tmp_path: Path) -> None:
    use_containerd(harness, containerd)
    harness.start()
    try:
        harness.write("shell.yaml", sleeper(BUSYBOX_IMAGE))
        running(harness)
        check_exec(harness, tmp_path, stdin_ends=False)
    finally:
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups


UPGRADE = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sock.sendall(b"GET " + sys.argv[2].encode() + b" HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n"
             b"Sec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
             b"Sec-WebSocket-Protocol: v5.channel.k8s.io\\r\\n\\r\\n")
print(sock.recv(65536).decode(errors="replace"))
"""


def test_exec_on_the_socket_is_for_root_alone(harness: AgentHarness, tmp_path: Path) -> None:
    """A socketGroup gives read access: exec and port-forward answer 403 to any uid but root's."""
    open_dir = Path(tempfile.mkdtemp(prefix="nodeagent-exec-"))  # a directory another user can reach
    try:
        open_dir.chmod(0o755)
        harness.socket = open_dir / "nodeagent.sock"
        harness.client.path = str(harness.socket)
        harness.configure({"nodeagent": {"socket": str(harness.socket)}})
        harness.start()
        harness.write("shell.yaml", sleeper())
        running(harness)
        harness.socket.chmod(0o666)  # as if nobody were in its socketGroup
        for verb in ("exec?command=true", "portforward?ports=80"):
            url = f"/api/v1/namespaces/default/pods/{POD}/{verb}"
            as_nobody = subprocess.run(["/usr/bin/python3", "-c", UPGRADE, str(harness.socket), url], user=65534,
                                       capture_output=True, text=True, timeout=30)
            assert as_nobody.stdout.startswith("HTTP/1.1 403"), as_nobody
            assert "is for root (uid 65534 may only read)" in as_nobody.stdout, as_nobody
            as_root = subprocess.run(["/usr/bin/python3", "-c", UPGRADE, str(harness.socket), url],
                                     capture_output=True, text=True, timeout=30)
            assert as_root.stdout.startswith("HTTP/1.1 101"), as_root
        assert harness.pods()  # reading stays open to the group
    finally:
        harness.stop()
        shutil.rmtree(open_dir, ignore_errors=True)


def test_a_command_runs_in_the_container_cgroup_and_ends_with_its_client(harness: AgentHarness) -> None:
    harness.start()
    harness.write("shell.yaml", sleeper())
    running(harness)
    path = harness.cgroup_path("shell", "c")
    argv = [sys.executable, "-m", "nodeagent", "exec", "--socket", str(harness.socket), "shell", "--",
            "sleep", "1234"]

    def commands_in_cgroup() -> list[int]:
        """The exec'd command's pids (not a process that was there before: one of the container's start may
        still be leaving when the container shows running)."""
        commands = []
        for pid in harness.procs(path):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x001234\x00":
                    commands.append(pid)
        return commands

    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as client:
        try:
            wait_for(commands_in_cgroup, what="the command in the container cgroup")
        finally:
            client.kill()
    wait_for(lambda: not commands_in_cgroup(), timeout=30, what="the command gone with its client")
