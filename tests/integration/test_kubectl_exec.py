"""kubectl exec against the agent (the real kubectl, over the WebSocket protocol kubectl 1.30+ speaks), on
the process and runc runtimes: exit codes, stdin, a terminal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.kubectl_proxy import kubectl, kubectl_endpoint
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


def check_exec(agent: AgentHarness, tmp_path: Path, *, stdin_ends: bool = True) -> None:
    """stdin_ends: kubectl's end of stdin reaches the command (not through containerd 1.x's v4 server)."""
    reader = "tr a-z A-Z" if stdin_ends else "head -n 1 | tr a-z A-Z"
    with kubectl_endpoint(agent.socket) as port:
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


def test_kubectl_exec_on_the_process_runtime(harness: AgentHarness, tmp_path: Path) -> None:
    harness.start()
    harness.write("shell.yaml", sleeper())
    running(harness)
    check_exec(harness, tmp_path)


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
