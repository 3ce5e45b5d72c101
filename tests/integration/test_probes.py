"""Probes on real containers: readiness gates READY, liveness restarts, startup holds the others back."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from tests.integration.harness import NODE, AgentHarness, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(agent: AgentHarness, name: str) -> bool:
    return bool(agent.container_status(name, "c")["ready"])


def unhealthy(agent: AgentHarness) -> list[str]:
    return [e["message"] for e in agent.events() if e["reason"] == "Unhealthy"]


def test_readiness_gates_ready(agent: AgentHarness, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    agent.write("gated.yaml", f"""
kind: Pod
metadata: {{name: gated}}
spec:
  containers:
  - name: c
    image: x
    command: [sleep, '3600']
    readinessProbe: {{exec: {{command: [test, -f, {flag}]}}, periodSeconds: 1}}
""")
    wait_for(lambda: "running" in agent.container_status("gated", "c")["state"], what="running")
    wait_for(lambda: unhealthy(agent), what="a failed readiness probe")
    assert not ready(agent, "gated")
    row = agent.cli("get", "pods").stdout.splitlines()[1].split()
    assert row[:3] == [f"gated-{NODE}", "0/1", "Running"]
    flag.touch()
    wait_for(lambda: ready(agent, "gated"), what="ready once the probe passes")
    conditions = {c["type"]: c["status"] for c in agent.pod("gated")["status"]["conditions"]}
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    assert unhealthy(agent)[0].startswith("Readiness probe failed:")


def test_liveness_restarts_the_container_after_its_prestop_hook(agent: AgentHarness, tmp_path: Path) -> None:
    alive, stopped = tmp_path / "alive", tmp_path / "prestop-ran"
    alive.touch()
    agent.write("lively.yaml", f"""
kind: Pod
metadata: {{name: lively}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: x
    command: [sleep, '3600']
    livenessProbe: {{exec: {{command: [test, -f, {alive}]}}, periodSeconds: 1, failureThreshold: 2}}
    lifecycle: {{preStop: {{exec: {{command: [touch, {stopped}]}}}}}}
""")
    wait_for(lambda: "running" in agent.container_status("lively", "c")["state"], what="running")
    alive.unlink()
    wait_for(lambda: agent.container_status("lively", "c")["restartCount"] >= 1, timeout=20, what="a restart")
    killing = [e["message"] for e in agent.events() if e["reason"] == "Killing"]
    assert "Container c failed liveness probe, will be restarted" in killing
    assert any(m.startswith("Liveness probe failed:") for m in unhealthy(agent))
    assert stopped.exists()  # the kubelet's killContainer runs preStop before the stop signal


def test_http_and_tcp_probes_with_a_startup_probe(agent: AgentHarness, tmp_path: Path) -> None:
    port = free_port()
    agent.write("web.yaml", f"""
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: c
    image: x
    command: [sh, -c, "sleep 2; exec python3 -m http.server {port}"]
    ports: [{{name: http, containerPort: {port}}}]
    startupProbe: {{tcpSocket: {{port: http}}, periodSeconds: 1, failureThreshold: 10}}
    readinessProbe: {{httpGet: {{port: {port}, path: /}}, periodSeconds: 1}}
    livenessProbe: {{httpGet: {{port: http, path: /}}, periodSeconds: 1}}
""")
    wait_for(lambda: ready(agent, "web"), timeout=20, what="ready after the server came up")
    status = agent.container_status("web", "c")
    assert status["restartCount"] == 0
    assert all(m.startswith("Startup probe failed:") for m in unhealthy(agent))  # only while it was starting


def test_started_once_the_startup_probe_passes(agent: AgentHarness, tmp_path: Path) -> None:
    """containerStatuses[].started is the kubelet's: false while the container runs but its startupProbe has not
    passed, true once it has."""
    flag = tmp_path / "up"
    agent.write("slow.yaml", f"""
kind: Pod
metadata: {{name: slow}}
spec:
  containers:
  - name: c
    image: x
    command: [sleep, '3600']
    startupProbe: {{exec: {{command: [test, -f, {flag}]}}, periodSeconds: 1, failureThreshold: 60}}
""")
    wait_for(lambda: "running" in agent.container_status("slow", "c")["state"], what="running")
    wait_for(lambda: unhealthy(agent), what="a failed startup probe")
    assert agent.container_status("slow", "c")["started"] is False
    flag.touch()
    wait_for(lambda: agent.container_status("slow", "c")["started"] is True, what="started once the probe passes")


# A grpc health server (grpcio from the test's own venv), answering what the status file says.
HEALTH_SERVER = """
import sys, pathlib, grpc
from concurrent import futures
statuses = {"SERVING": 1, "NOT_SERVING": 2}
def check(request, context):
    return bytes([8, statuses[pathlib.Path(sys.argv[2]).read_text().strip()]])
handler = grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("0.0.0.0:" + sys.argv[1])
server.start()
server.wait_for_termination()
"""


def test_grpc_liveness_probe_restarts_a_server_that_stops_serving(agent: AgentHarness, tmp_path: Path) -> None:
    port = free_port()
    script, status = tmp_path / "health.py", tmp_path / "status"
    script.write_text(HEALTH_SERVER)
    status.write_text("SERVING")
    agent.write("grpc.yaml", f"""
kind: Pod
metadata: {{name: grpc}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: x
    command: [{sys.executable}, {script}, '{port}', {status}]
    readinessProbe: {{grpc: {{port: {port}}}, periodSeconds: 1}}
    livenessProbe: {{grpc: {{port: {port}, service: any}}, initialDelaySeconds: 3, periodSeconds: 1,
                    failureThreshold: 2}}
""")
    wait_for(lambda: ready(agent, "grpc"), timeout=30, what="ready once the server answers SERVING")
    assert agent.container_status("grpc", "c")["restartCount"] == 0
    status.write_text("NOT_SERVING")
    wait_for(lambda: agent.container_status("grpc", "c")["restartCount"] >= 1, timeout=30, what="a restart")
    messages = unhealthy(agent)
    assert 'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")' in messages, messages
    assert 'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")' in messages, messages


def test_http_probe_path_without_a_leading_slash(agent: AgentHarness, tmp_path: Path) -> None:
    """OpenShift's kube-apiserver probes `livez?exclude=etcd`: the kubelet adds the "/" (formatURL)."""
    port = free_port()
    (tmp_path / "livez").write_text("ok")
    agent.write("slashless.yaml", f"""
kind: Pod
metadata: {{name: slashless}}
spec:
  containers:
  - name: c
    image: x
    command: [sh, -c, "cd {tmp_path} && exec python3 -m http.server {port}"]
    readinessProbe: {{httpGet: {{port: {port}, path: "livez?exclude=etcd"}}, periodSeconds: 1}}
""")
    wait_for(lambda: ready(agent, "slashless"), timeout=20, what="ready: the probe asked for /livez")
