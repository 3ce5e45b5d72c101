"""kubectl port-forward against the agent (the real kubectl: SPDY/3.1 tunnelled in a WebSocket) to an HTTP
server in a pod's network namespace, on the process and runc runtimes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.kubectl_proxy import kubectl_argv, kubectl_endpoint, kubectl_env
from tests.integration.registry import auth_registry, registry
from tests.integration.test_cri import configure as use_containerd
from tests.integration.test_cri import remove_sandboxes
from tests.integration.test_kubectl_exec import runc_agent
from tests.integration.test_runc import Images, images

__all__ = ["auth_registry", "containerd", "cri_images", "images", "registry", "runc_agent"]  # the fixtures, imported for pytest

POD = f"web-{NODE}"
SERVE = "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec busybox httpd -f -p 8080 -h /www"


def web_pod(image: str = "busybox") -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
        "containers": [{"name": "c", "image": image, "command": ["busybox", "sh", "-c", SERVE],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "www", "mountPath": "/www"}]}],
        "volumes": [{"name": "www", "emptyDir": {}}]}})


def serving(agent: AgentHarness) -> None:
    """Until the server listens (a refused connection ends kubectl's port-forward)."""
    wait_for(lambda: agent.container_status("web", "c").get("ready"), timeout=60, what="the web server ready")


def check_port_forward(agent: AgentHarness, tmp_path: Path) -> None:
    serving(agent)
    with kubectl_endpoint(agent.socket) as endpoint:
        check_forwarder(kubectl_argv(endpoint.port, tmp_path, "port-forward", POD, ":8080"), kubectl_env(tmp_path))
        assert endpoint.upgrades == ["websocket"]
        # as kubectl before 1.30 does it: the plain SPDY/3.1 upgrade
        check_forwarder(kubectl_argv(endpoint.port, tmp_path, "port-forward", POD, ":8080"),
                        {**kubectl_env(tmp_path), "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})
        assert endpoint.upgrades == ["websocket", "SPDY/3.1"]


def check_forwarder(argv: list[str], env: dict[str, str] | None = None) -> None:
    """The forwarder says where it listens, and answers come from the pod's server through it."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as forward:
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline().decode()
            found = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
            assert found, (line, forward.stderr)
            url = f"http://127.0.0.1:{found[1]}/index.html"

            def fetch() -> bytes:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    return bytes(answer.read())

            assert wait_for(fetch, timeout=20, what="an answer through the forward") == b"hello-from-the-pod\n"
            for _ in range(3):  # one connection after another, each its own pair of streams
                assert fetch() == b"hello-from-the-pod\n"
        finally:
            forward.terminate()
            forward.wait(10)


def test_kubectl_port_forward_on_the_process_runtime(harness: AgentHarness, tmp_path: Path) -> None:
    harness.start()
    harness.write("web.yaml", web_pod())
    check_port_forward(harness, tmp_path)


def test_kubectl_port_forward_on_runc(runc_agent: AgentHarness, images: Images, tmp_path: Path) -> None:
    runc_agent.write("web.yaml", web_pod(images.busybox.reference))
    check_port_forward(runc_agent, tmp_path)


def test_nodeagent_port_forward_over_the_socket(harness: AgentHarness) -> None:
    harness.start()
    harness.write("web.yaml", web_pod())
    serving(harness)
    check_forwarder([sys.executable, "-m", "nodeagent", "port-forward", "--socket", str(harness.socket), "web",
                     ":8080"])


def test_a_port_nobody_listens_on_is_reported_on_the_error_stream(harness: AgentHarness, tmp_path: Path) -> None:
    harness.start()
    harness.write("web.yaml", web_pod())
    serving(harness)
    with kubectl_endpoint(harness.socket) as endpoint, subprocess.Popen(
            kubectl_argv(endpoint.port, tmp_path, "port-forward", POD, ":9999"), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=kubectl_env(tmp_path)) as forward:
        try:
            assert forward.stdout is not None and forward.stderr is not None
            local = re.search(r":(\d+) -> 9999", forward.stdout.readline().decode())
            assert local
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{local[1]}/", timeout=10).close()
            forward.terminate()
            assert b"connect: Connection refused" in forward.stderr.read()
        finally:
            forward.kill()


def test_kubectl_port_forward_on_cri(harness: AgentHarness, containerd: Containerd, tmp_path: Path) -> None:
    use_containerd(harness, containerd)
    harness.start()
    try:
        harness.write("web.yaml", web_pod(BUSYBOX_IMAGE))
        check_port_forward(harness, tmp_path)
    finally:
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups
