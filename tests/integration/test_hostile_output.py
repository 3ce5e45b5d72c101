"""Containers that answer without end: exec probes printing 50 MB, an HTTP server whose body never ends.
Probes and hooks still decide as the kubelet's do, and the agent's peak memory barely moves."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.test_logs import peak_rss
from tests.integration.test_probes import free_port

MiB = 1 << 20
ENDLESS_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler
from socketserver import ThreadingTCPServer  # not HTTPServer: its getfqdn() waits for DNS the pod cannot reach
class Endless(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        block = b"x" * 65536
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass
    def log_message(self, *args):
        pass
ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), Endless).serve_forever()
"""


def messages(agent: AgentHarness, reason: str) -> list[str]:
    return [e["message"] for e in agent.events() if e["reason"] == reason]


def test_exec_probes_printing_50_mb(agent: AgentHarness) -> None:
    assert agent.process is not None
    before = peak_rss(agent.process.pid)
    agent.write("chatty.yaml", """
kind: Pod
metadata: {name: chatty}
spec:
  containers:
  - name: c
    image: x
    command: [sleep, '3600']
    livenessProbe:
      exec: {command: [sh, -c, 'head -c 50000000 /dev/zero | tr "\\\\0" y; exit 0']}
      periodSeconds: 1
      timeoutSeconds: 20
    readinessProbe:
      exec: {command: [sh, -c, 'head -c 50000000 /dev/zero | tr "\\\\0" n; exit 1']}
      periodSeconds: 1
      timeoutSeconds: 20
""")
    failed = wait_for(lambda: messages(agent, "Unhealthy"), timeout=30, what="the readiness probe's failure")
    assert failed[0] == "Readiness probe failed: " + "n" * 1024
    time.sleep(3)  # a few more rounds of both
    status = agent.container_status("chatty", "c")
    assert status["restartCount"] == 0 and "running" in status["state"] and not status["ready"]
    assert all(m.startswith("Readiness") for m in messages(agent, "Unhealthy"))  # liveness passed every time
    grown = peak_rss(agent.process.pid) - before
    assert grown < 30 * MiB, f"the agent's peak RSS grew by {grown / MiB:.0f} MiB"


def test_an_endless_http_body_for_a_probe_and_a_pre_stop_hook(agent: AgentHarness, tmp_path: Path) -> None:
    assert agent.process is not None
    server = tmp_path / "endless.py"
    server.write_text(ENDLESS_SERVER)
    port = free_port()
    agent.write("endless.yaml", f"""
kind: Pod
metadata: {{name: endless}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: c
    image: x
    command: [{sys.executable}, {server}, '{port}']
    livenessProbe: {{httpGet: {{port: {port}, path: /}}, periodSeconds: 1, initialDelaySeconds: 3}}
    readinessProbe: {{httpGet: {{port: {port}, path: /}}, periodSeconds: 1}}
    lifecycle:
      preStop: {{httpGet: {{port: {port}, path: /stop}}}}
""")
    wait_for(lambda: agent.container_status("endless", "c")["ready"], timeout=20, what="ready")
    before = peak_rss(agent.process.pid)
    time.sleep(2)
    assert agent.container_status("endless", "c")["restartCount"] == 0
    started = time.monotonic()
    agent.remove("endless.yaml")
    wait_for(lambda: not any(p["metadata"]["name"].startswith("endless") for p in agent.pods()), timeout=25,
             what="the pod gone")
    assert time.monotonic() - started < 10, "the preStop hook waited for the body's end"
    assert messages(agent, "FailedPreStopHook") == []
    grown = peak_rss(agent.process.pid) - before
    assert grown < 30 * MiB, f"the agent's peak RSS grew by {grown / MiB:.0f} MiB"
