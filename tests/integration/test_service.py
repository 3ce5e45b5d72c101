"""The agent as a service: admission, lifecycle hooks, sd_notify, reload, metrics, and refusing to start."""

from __future__ import annotations

import grp
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.integration.harness import NODE, AgentHarness, wait_for

SLEEPER = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']%s}]\n"


def reasons(agent: AgentHarness) -> list[str]:
    return [e["reason"] for e in agent.events()]


# -- admission -------------------------------------------------------------------------------------------

def test_memory_demo_3_stays_pending_out_of_memory(agent: AgentHarness) -> None:
    agent.write("memory-demo-3.yaml", (EXAMPLES / "memory-demo-3.yaml").read_text())
    pod = wait_for(lambda: agent.pod("memory-demo-3", "mem-example"), what="listed")
    status = pod["status"]
    assert (status["phase"], status["reason"]) == ("Pending", "OutOfmemory")
    assert status["message"].startswith(f"Node didn't have enough resource: memory, requested: {1000 << 30}, used: 0, "
                                        "capacity: ")
    assert "OutOfmemory" in agent.cli("get", "pods").stdout
    assert "OutOfmemory" in reasons(agent)
    time.sleep(1)
    assert not agent.cgroups.exists(agent.cgroup_path("memory-demo-3", "memory-demo-3-ctr", "mem-example"))


def test_max_pods_then_admitted_when_room_appears(harness: AgentHarness) -> None:
    harness.configure({"maxPods": 2})
    harness.start()
    for name in ("one", "two", "three"):
        harness.write(f"{name}.yaml", SLEEPER % (name, ""))
    third = wait_for(lambda: [p for p in harness.pods() if p["status"].get("reason") == "OutOfpods"],
                     what="one pod out of pods")[0]
    assert third["status"]["message"] == "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
    waiting = third["metadata"]["name"].removesuffix(f"-{NODE}")
    others = [n for n in ("one", "two", "three") if n != waiting]
    harness.remove(f"{others[0]}.yaml")
    wait_for(lambda: "running" in harness.container_status(waiting, "c")["state"], what="admitted once room appeared")


def test_out_of_cpu(agent: AgentHarness) -> None:
    agent.write("greedy.yaml", SLEEPER % ("greedy", ", resources: {requests: {cpu: '64'}}"))
    pod = wait_for(lambda: agent.pod("greedy"), what="listed")
    assert pod["status"]["reason"] == "OutOfcpu"
    assert "Node didn't have enough resource: cpu, requested: 64000, used: 0, capacity: " in pod["status"]["message"]


# -- hooks ------------------------------------------------------------------------------------------------

@pytest.fixture
def http_server() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        thread.join()


def test_pre_stop_runs_before_sigterm_within_the_grace_period(harness: AgentHarness, tmp_path: Path,
                                                             http_server: tuple[int, list[str]]) -> None:
    harness.use_host_network()  # the preStop hook calls the test's server on the machine's loopback
    harness.start()
    agent = harness
    port, seen = http_server
    marks = tmp_path / "marks"
    agent.write("hooked.yaml", f"""
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: x
    command: [sh, -c, "trap 'echo term >> {marks}; exit 0' TERM; while :; do sleep 0.1; done"]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop $POD >> {marks}; sleep 1"]}}}}
    env: [{{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
  - name: web
    image: x
    command: [sleep, '3600']
    lifecycle:
      preStop: {{httpGet: {{host: 127.0.0.1, port: {port}, path: /shutdown}}}}
""")
    wait_for(lambda: all("running" in s["state"] for s in agent.pod("hooked")["status"]["containerStatuses"]),
             what="running")
    agent.remove("hooked.yaml")
    wait_for(lambda: not agent.pods(), timeout=20, what="stopped")
    assert marks.read_text() == f"prestop hooked-{NODE}\nterm\n"
    assert seen == ["/shutdown"]


def test_failed_pre_stop_hook_is_an_event(agent: AgentHarness) -> None:
    agent.write("badstop.yaml", SLEEPER % ("badstop", ", lifecycle: {preStop: {exec: {command: [sh, -c, 'exit 7']}}}"))
    wait_for(lambda: "running" in agent.container_status("badstop", "c")["state"], what="running")
    agent.remove("badstop.yaml")
    event = wait_for(lambda: [e for e in agent.events() if e["reason"] == "FailedPreStopHook"], what="event")[0]
    assert event["type"] == "Warning" and "exited with 7" in event["message"]


def test_post_start_runs_in_the_container_and_a_failure_kills_it(agent: AgentHarness, tmp_path: Path) -> None:
    mark = tmp_path / "started"
    agent.write("poststart.yaml", SLEEPER % (
        "poststart", f", lifecycle: {{postStart: {{exec: {{command: [sh, -c, 'echo $HOSTNAME > {mark}']}}}}}}"))
    wait_for(lambda: mark.exists() and mark.read_text(), what="postStart ran")
    assert mark.read_text() == f"poststart-{NODE}\n"
    agent.write("badstart.yaml", SLEEPER % ("badstart", ", lifecycle: {postStart: {exec: {command: [sh, -c, 'exit 1']}}}"))
    event = wait_for(lambda: [e for e in agent.events() if e["reason"] == "FailedPostStartHook"], what="event")[0]
    assert event["type"] == "Warning" and "exited with 1" in event["message"]
    wait_for(lambda: agent.container_status("badstart", "c")["restartCount"] >= 1, what="killed and restarted")


# -- sd_notify, reload, metrics ----------------------------------------------------------------------------

def test_sd_notify_ready_status_watchdog_and_reload(harness: AgentHarness, tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(20)
    try:
        harness.write("web.yaml", SLEEPER % ("web", ""))
        harness.start(env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"})
        messages: list[str] = []

        def receive_until(marker: str) -> str:
            while True:
                message = listener.recv(4096).decode()
                messages.append(message)
                if marker in message:
                    return message

        ready = receive_until("READY=1")
        assert "STATUS=1 pods:" in ready and f"MAINPID={harness.process.pid}" in ready  # type: ignore[union-attr]
        receive_until("WATCHDOG=1")
        receive_until("WATCHDOG=1")
        receive_until("STATUS=1 pods: 1 running")
        harness.configure({"staticPodPath": str(tmp_path)})
        harness.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        receive_until("RELOADING=1")
        receive_until("READY=1")
        wait_for(lambda: "configuration reloaded: manifests in " + str(tmp_path) in harness.agent_log(),
                 what="reload logged")
        wait_for(lambda: harness.pods() == [], what="the pod from the old directory stopped")
        harness.stop()
        assert any("STOPPING=1" in m for m in [*messages, listener.recv(4096).decode()])
    finally:
        listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_metrics_on_the_socket_and_on_tcp(harness: AgentHarness) -> None:
    port = free_port()
    harness.use_host_network()  # the test reads /metrics on the machine's loopback
    harness.configure({"nodeagent": {"metricsBindAddress": f"127.0.0.1:{port}"}})
    harness.start()
    harness.write("web.yaml", SLEEPER % ("web", ""))
    harness.write("oom.yaml", (EXAMPLES / "memory-demo-2.yaml").read_text())
    wait_for(lambda: "running" in harness.container_status("web", "c")["state"], what="running")
    wait_for(lambda: harness.container_status("memory-demo-2", "memory-demo-2-ctr", "mem-example")["restartCount"] >= 1,
             what="an OOM kill")
    over_tcp = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read() == b"ok"
    for text in (over_tcp, harness.cli_raw("/metrics")):
        assert "kubelet_running_pods 1.0" in text or "kubelet_running_pods 2.0" in text
        assert 'kubelet_running_containers{container_state="running"}' in text
        assert 'kubelet_started_containers_total{container_type="container"}' in text
        assert "kubelet_pod_start_duration_seconds_bucket" in text
        oom = next(line for line in text.splitlines() if line.startswith("nodeagent_oom_kills_total"))
        assert float(oom.split()[-1]) >= 1
        assert f'nodeagent_container_restarts_total{{container="c",namespace="default",pod="web-{NODE}"}} 0.0' in text


# -- refusing to start --------------------------------------------------------------------------------------

def run_agent(config: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "nodeagent", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_refuses_without_root(harness: AgentHarness) -> None:
    done = run_agent(harness.config_path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert done.returncode == 1
    assert "nodeagent run needs root" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ({"nodeagent": {"runtime": "runc", "runcPath": "/nonexistent/runc"}},
     "nodeagent.runcPath: '/nonexistent/runc' is not an executable (Debian: apt-get install runc)"),
    ({"nodeagent": {"runtime": "cri"}, "containerRuntimeEndpoint": "tcp://127.0.0.1:1"},
     "containerRuntimeEndpoint 'tcp://127.0.0.1:1': protocol 'tcp' not supported, only unix:///path"),
    ({"cgroupDriver": "systemd"}, "cgroupDriver systemd (set by cgroupDriver in the configuration) needs systemd as "
                                  "PID 1, and it is not"),
    ({"cgroupDriver": "cgroupz"}, 'cgroupDriver: Unsupported value: "cgroupz"'),
])
def test_a_setting_it_cannot_honour_is_a_clear_start_error(harness: AgentHarness, setting: dict[str, object],
                                                         message: str) -> None:
    harness.configure(setting)
    done = run_agent(harness.config_path)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unknown_fields_are_warned_about_once(harness: AgentHarness) -> None:
    harness.configure({"clusterDNS": ["10.96.0.10"], "nodeagent": {"colour": "blue"}})
    harness.start()
    wait_for(lambda: "nodeagent is running" in harness.agent_log(), what="started")
    log = harness.agent_log()
    assert log.count('clusterDNS: unknown field "clusterDNS" (not used by nodeagent)') == 1
    assert log.count('nodeagent.colour: unknown field "colour"') == 1


def test_refuses_to_start_with_swap_on(harness: AgentHarness) -> None:
    swapfile = Path("/var/tmp") / f"nodeagent-test-swap-{os.getpid()}"
    try:
        subprocess.run(["fallocate", "-l", "32M", str(swapfile)], check=True)
        swapfile.chmod(0o600)
        subprocess.run(["mkswap", str(swapfile)], check=True, capture_output=True)
        if subprocess.run(["swapon", str(swapfile)], capture_output=True, check=False).returncode != 0:
            pytest.skip("this machine cannot turn a swap file on (swapon refused)")
        done = run_agent(harness.config_path)
        assert done.returncode == 1
        assert ("running with swap on is not supported, please disable swap! or set --fail-swap-on flag to false. "
                "/proc/swaps contained: [") in done.stderr
        assert str(swapfile) in done.stderr
        harness.configure({"failSwapOn": False})
        harness.start()  # and with failSwapOn false it starts
    finally:
        subprocess.run(["swapoff", str(swapfile)], capture_output=True, check=False)
        swapfile.unlink(missing_ok=True)


def test_socket_is_0600_or_0660_for_its_group(harness: AgentHarness) -> None:
    harness.configure({"nodeagent": {"socketGroup": "nogroup"}})
    harness.start()
    info = harness.socket.stat()
    assert oct(info.st_mode & 0o777) == "0o660"
    assert info.st_gid == grp.getgrnam("nogroup").gr_gid


def test_logs_follow_until_the_container_ends(agent: AgentHarness) -> None:
    agent.write("talker.yaml", "kind: Pod\nmetadata: {name: talker}\nspec:\n  restartPolicy: Never\n  containers: "
                               "[{name: c, image: x, command: [sh, -c, 'for i in 1 2 3; do echo line $i; sleep 0.5; "
                               "done']}]\n")
    wait_for(lambda: "running" in agent.container_status("talker", "c")["state"], what="running")
    started = time.monotonic()
    done = agent.cli("logs", "-f", "talker")
    assert done.stdout == "line 1\nline 2\nline 3\n"
    assert time.monotonic() - started > 0.5  # it followed the output as it came, until the end
    timestamped = agent.cli("logs", "--timestamps", "talker").stdout.splitlines()
    assert len(timestamped) == 3 and all(line.split(" ", 1)[1].startswith("line ") for line in timestamped)
