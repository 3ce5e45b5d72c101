"""The real kubectl (and the official Python client) against a real agent's HTTPS Kubernetes API: discovery,
get/describe/logs/wait/watch/top/events/nodes, authentication (token, client certificate, refusals) and the
read-only group, and `delete pod` answered as for the kubelet's mirror pods."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from nodeagent.kubeapi.tls import Pki
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.registry import Registry, auth_registry, registry
from tests.integration.test_runc import Images, RuncAgent, images, manifest

__all__ = ["auth_registry", "images", "registry"]  # the fixtures, imported for pytest

MIN_KUBECTL_MINOR = 30  # what these tests were written against (1.32 here); Debian 12's kubernetes-client is 1.20


def kubectl_minor() -> int | None:
    """kubectl's client minor version, None when there is no kubectl."""
    if shutil.which("kubectl") is None:
        return None
    found = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True)
    minor = json.loads(found.stdout or "{}").get("clientVersion", {}).get("minor", "0")
    return int(re.sub(r"\D.*", "", minor) or 0)


_MINOR = kubectl_minor()
pytestmark = pytest.mark.skipif(
    _MINOR is None or _MINOR < MIN_KUBECTL_MINOR,
    reason=f"needs kubectl 1.{MIN_KUBECTL_MINOR}+ (found: {'none' if _MINOR is None else f'1.{_MINOR}'}; "
           f"Debian 12's kubernetes-client package is 1.20, too old for kubectl's current discovery and watch)")


def pod(name: str, command: str, labels: dict[str, str] | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                               {"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", command]}]}})


class Kubectl:
    def __init__(self, agent: AgentHarness, kubeconfig: Path) -> None:
        self.agent = agent
        self.kubeconfig = kubeconfig

    def prefix(self) -> list[str]:
        node = self.agent.node
        return ["nsenter", f"--net={node.path}", "--"] if node is not None else []

    def run(self, *args: str, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.prefix(), "kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                                capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.returncode}\n{result.stderr}")
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.prefix(), "kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_kubeconfig(agent: AgentHarness, path: Path, *extra: str) -> Path:
    result = subprocess.run([sys.executable, "-m", "nodeagent", "kubeconfig", "--config", str(agent.config_path),
                             *extra], capture_output=True, text=True, check=True)
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def process_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHarness]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups and starts processes")
    agent = AgentHarness(tmp_path_factory.mktemp("kubeapi"))
    try:
        agent.write("web.yaml", pod("web", "echo one; echo two; echo three; sleep 3600", {"app": "web"}))
        agent.write("worker.yaml", pod("worker", "while true; do echo tick; sleep 0.2; done", {"app": "worker"}))
        agent.start()
        wait_for(lambda: all(p["status"].get("phase") == "Running" for p in agent.pods()) and len(agent.pods()) == 2,
                 what="both pods running")
        yield agent
    finally:
        agent.clean_up()


@pytest.fixture(scope="module")
def kubectl(process_agent: AgentHarness) -> Kubectl:
    return Kubectl(process_agent, make_kubeconfig(process_agent, process_agent.root / "admin.kubeconfig"))


def test_the_kubeconfig_is_complete_and_the_token_file_private(process_agent: AgentHarness, kubectl: Kubectl) -> None:
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).startswith(b"-----BEGIN")
    tokens = process_agent.state / "api" / "tokens.csv"
    assert tokens.stat().st_mode & 0o777 == 0o600
    assert config["users"][0]["user"]["token"] in tokens.read_text()


def test_get_pods_all_namespaces_wide_json_and_labels(kubectl: Kubectl) -> None:
    lines = kubectl.out("get", "pods", "-A").splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert set(rows) == {f"web-{NODE}", f"worker-{NODE}"}
    assert rows[f"web-{NODE}"][0] == "default" and rows[f"web-{NODE}"][2:4] == ["1/1", "Running"]

    wide = kubectl.out("get", "pods", "-o", "wide").splitlines()
    assert wide[0].split()[:8] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED"]
    assert all(NODE in line for line in wide[1:])

    listed = json.loads(kubectl.out("get", "pods", "-o", "json"))
    assert listed["kind"] == "List" and {item["metadata"]["name"] for item in listed["items"]} == set(rows)
    one = json.loads(kubectl.out("get", "pod", f"web-{NODE}", "-o", "json"))
    assert one["kind"] == "Pod" and one["metadata"]["labels"] == {"app": "web"} and one["metadata"]["resourceVersion"]

    assert kubectl.out("get", "pods", "-l", "app=worker", "-o", "name").split() == [f"pod/worker-{NODE}"]
    assert kubectl.out("get", "pods", "-l", "app in (web,nothing)", "-o", "name").split() == [f"pod/web-{NODE}"]
    assert kubectl.out("get", "pods", "--field-selector", f"metadata.name=worker-{NODE}", "-o", "name").split() == \
        [f"pod/worker-{NODE}"]
    missing = kubectl.run("get", "pod", "nothing", check=False)
    assert missing.returncode == 1 and 'pods "nothing" not found' in missing.stderr


def test_get_pods_watch_sees_a_pod_appear_and_wait_for_ready_and_delete(process_agent: AgentHarness, kubectl: Kubectl) -> None:
    watcher = kubectl.popen("get", "pods", "-w", "-o", "name")
    printer = kubectl.popen("get", "pods", "-w")  # server-side Tables in the watch events
    try:
        time.sleep(1.5)
        process_agent.write("late.yaml", pod("late", "sleep 3600"))
        kubectl.run("wait", "--for=condition=Ready", f"pod/late-{NODE}", "--timeout=30s", timeout=40)
        time.sleep(0.5)
        process_agent.remove("late.yaml")
        kubectl.run("wait", "--for=delete", f"pod/late-{NODE}", "--timeout=30s", timeout=40)  # a DELETED event
    finally:
        watcher.terminate()
        printer.terminate()
        out, _ = watcher.communicate(timeout=10)
        printed, _ = printer.communicate(timeout=10)
        if (process_agent.manifests / "late.yaml").exists():
            process_agent.remove("late.yaml")
    names = out.split()
    assert f"pod/late-{NODE}" in names and f"pod/web-{NODE}" in names
    rows = [line.split() for line in printed.splitlines()]
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [f"late-{NODE}", "1/1", "Running"] in [row[:3] for row in rows]


def test_describe_pod_and_node_and_get_nodes_and_events(kubectl: Kubectl) -> None:
    described = kubectl.out("describe", "pod", f"web-{NODE}")
    assert re.search(rf"^Name:\s+web-{NODE}$", described, re.M) and re.search(r"^Status:\s+Running$", described, re.M)
    assert "Started" in described  # its events
    nodes = kubectl.out("get", "nodes").splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] and nodes[1].split()[:2] == [NODE, "Ready"]
    node = kubectl.out("describe", "node", NODE)
    assert "Capacity:" in node and "Allocatable:" in node and f"web-{NODE}" in node
    events = kubectl.out("get", "events").splitlines()
    assert events[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert any(f"pod/web-{NODE}" in line and "Started" in line for line in events)


def test_logs_tail_and_follow(kubectl: Kubectl) -> None:
    assert kubectl.out("logs", f"web-{NODE}", "--tail", "2").split() == ["two", "three"]
    follower = kubectl.popen("logs", "-f", f"worker-{NODE}")
    try:
        time.sleep(2)
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    assert out.count("tick") >= 5


def test_top_pods_and_node(kubectl: Kubectl) -> None:
    top = wait_for(lambda: kubectl.run("top", "pods", check=False).stdout, what="kubectl top pods")
    assert top.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"] and f"worker-{NODE}" in top
    assert NODE in kubectl.out("top", "node")


def test_delete_pod_answers_as_for_a_mirror_pod_and_every_other_write_is_405(process_agent: AgentHarness,
                                                                               kubectl: Kubectl) -> None:
    uid = process_agent.pod("web")["metadata"]["uid"]
    deleted = kubectl.run("delete", "pod", f"web-{NODE}", timeout=20)
    assert f'pod "web-{NODE}" deleted' in deleted.stdout
    assert "static pod" in deleted.stderr and "keeps it running" in deleted.stderr
    assert process_agent.pod("web")["metadata"]["uid"] == uid
    assert process_agent.pod("web")["status"]["phase"] == "Running"
    labelled = kubectl.run("label", "pod", f"web-{NODE}", "x=y", check=False)
    assert labelled.returncode == 1 and "(MethodNotAllowed)" in labelled.stderr and "change the manifest" in labelled.stderr


def test_wrong_or_missing_token_is_401_and_a_client_certificate_works(process_agent: AgentHarness,
                                                                       kubectl: Kubectl, tmp_path: Path) -> None:
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": "not-a-token"}
    wrong = tmp_path / "wrong"
    wrong.write_text(yaml.safe_dump(config))
    refused = Kubectl(process_agent, wrong).run("get", "pods", check=False)
    assert refused.returncode == 1 and "Unauthorized" in refused.stderr
    server = config["clusters"][0]["cluster"]["server"]
    ca = process_agent.state / "api" / "pki" / "ca.crt"
    missing = subprocess.run([*kubectl.prefix(), "curl", "-sS", "--cacert", str(ca), "-w", "\n%{http_code}",
                              f"{server}/api/v1/pods"], capture_output=True, text=True, timeout=20)
    body, code = missing.stdout.rsplit("\n", 1)
    assert code == "401" and json.loads(body)["reason"] == "Unauthorized"

    cert, key = Pki(str(process_agent.state / "api" / "pki")).issue("carol", ["system:masters"])
    config["users"][0]["user"] = {"client-certificate-data": base64.b64encode(cert).decode(),
                                  "client-key-data": base64.b64encode(key).decode()}
    certified = tmp_path / "cert"
    certified.write_text(yaml.safe_dump(config))
    assert f"pod/web-{NODE}" in Kubectl(process_agent, certified).out("get", "pods", "-o", "name")


def test_a_read_only_token_reads_but_cannot_exec(process_agent: AgentHarness, tmp_path: Path) -> None:
    reader = Kubectl(process_agent, make_kubeconfig(process_agent, tmp_path / "ro", "--user", "dave", "--read-only"))
    assert f"pod/web-{NODE}" in reader.out("get", "pods", "-o", "name")
    assert reader.out("logs", f"web-{NODE}", "--tail", "1").strip() == "three"
    refused = reader.run("exec", f"web-{NODE}", "--", "true", check=False)
    assert refused.returncode != 0
    assert 'User "dave" cannot create resource "pods/exec"' in refused.stderr
    refused = reader.run("attach", f"worker-{NODE}", check=False)
    assert refused.returncode != 0 and 'User "dave" cannot create resource "pods/attach"' in refused.stderr
    refused = reader.run("delete", "pod", f"web-{NODE}", check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr


def test_exec_and_port_forward_over_https_with_a_full_access_token(kubectl: Kubectl) -> None:
    """The kubestream handlers behind the HTTPS listener's authentication: kubectl as a user would run it."""
    done = kubectl.run("exec", f"web-{NODE}", "--", "sh", "-c", "echo over-https; exit 4", check=False)
    assert (done.returncode, done.stdout) == (4, "over-https\n"), done.stderr
    piped = kubectl.run("exec", "-i", f"web-{NODE}", "--", "tr", "a-z", "A-Z", check=False, input="quiet\n")
    assert (piped.returncode, piped.stdout) == (0, "QUIET\n"), piped.stderr


def test_kubectl_needs_nothing_but_the_generated_kubeconfig(process_agent: AgentHarness, kubectl: Kubectl,
                                                             tmp_path: Path) -> None:
    """No proxy, no static discovery: with an empty cache, every request kubectl makes for get, describe, logs,
    exec and attach is answered (200, or 101 for the upgrades), and each command works."""
    echo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"}, "spec": {"containers": [
        {"name": "main", "image": "busybox", "stdin": True, "stdinOnce": True,
         "command": ["/bin/sh", "-c", 'read -r line; echo "got $line"']}]}}
    process_agent.write("echo.yaml", json.dumps(echo))
    try:
        wait_for(lambda: "running" in process_agent.container_status("echo", "main")["state"], what="echo running")
        answers: list[str] = []

        def run(*args: str, input: str | None = None) -> str:
            done = kubectl.run("--cache-dir", str(tmp_path / "cache"), "-v=6", *args, input=input)
            answers.extend(re.findall(r"round_trippers.go:\d+\] (\w+ \S+ \d+)", done.stderr))
            return done.stdout

        assert f"web-{NODE}" in run("get", "pods")
        assert "Containers:" in run("describe", "pod", f"web-{NODE}")
        assert run("logs", f"web-{NODE}") == "one\ntwo\nthree\n"
        assert run("exec", f"web-{NODE}", "--", "echo", "in") == "in\n"
        assert run("attach", "-i", f"echo-{NODE}", input="hi\n") == "got hi\n"
    finally:
        process_agent.remove("echo.yaml")
    assert any(answer.startswith("GET") and "/attach?" in answer and answer.endswith(" 101") for answer in answers)
    assert all(answer.endswith((" 200", " 101")) for answer in answers), answers
    # aggregated discovery: /api and /apis answer for every group; no request for a group-version's list
    paths = [urlsplit(answer.split()[1]).path for answer in answers]
    assert [path for path in paths if path in ("/api", "/apis", "/api/v1", "/apis/metrics.k8s.io/v1beta1")] == [
        "/api", "/apis"], answers


def test_the_python_client_lists_and_watches_pods(process_agent: AgentHarness, kubectl: Kubectl) -> None:
    """The official client runs in the agent's network namespace (a child process, as kubectl does)."""
    script = f"""
import json, sys
from kubernetes import client, config, watch
config.load_kube_config({str(kubectl.kubeconfig)!r})
api = client.CoreV1Api()
listed = api.list_pod_for_all_namespaces(label_selector="app=web")
names = [p.metadata.name for p in listed.items]
seen = []
for event in watch.Watch().stream(api.list_namespaced_pod, "default", timeout_seconds=2,
                                  resource_version="0"):
    seen.append((event["type"], event["object"].metadata.name))
print(json.dumps({{"names": names, "rv": listed.metadata.resource_version, "seen": seen}}))
"""
    result = subprocess.run([*kubectl.prefix(), sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["names"] == [f"web-{NODE}"] and int(data["rv"]) > 0
    assert ["ADDED", f"web-{NODE}"] in data["seen"] and ["ADDED", f"worker-{NODE}"] in data["seen"]


def test_kubectl_with_the_runc_runtime(tmp_path: Path, registry: Registry, auth_registry: Registry,
                                       images: Images) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    (tmp_path / "runc").mkdir()
    runc = RuncAgent(tmp_path / "runc", [registry, auth_registry])
    try:
        agent = runc.harness
        agent.start()
        document = yaml.safe_load(manifest("app", [{"name": "app", "image": images.busybox.reference, "command": [
            "sh", "-c", "echo one; echo two; while true; do echo tick; sleep 0.2; done"]}]))
        document["metadata"]["labels"] = {"app": "x"}
        agent.write("app.yaml", yaml.safe_dump(document))
        kubectl = Kubectl(agent, make_kubeconfig(agent, tmp_path / "kubeconfig"))
        watcher = kubectl.popen("get", "pods", "-w", "-o", "name")
        try:
            kubectl.run("wait", "--for=condition=Ready", f"pod/app-{NODE}", "--timeout=60s", timeout=70)
        finally:
            watcher.terminate()
            seen, _ = watcher.communicate(timeout=10)
        assert f"pod/app-{NODE}" in seen.split()
        wide = kubectl.out("get", "pods", "-A", "-o", "wide", "-l", "app=x").splitlines()
        assert len(wide) == 2 and wide[1].split()[:4] == ["default", f"app-{NODE}", "1/1", "Running"]
        pod_json = json.loads(kubectl.out("get", "pod", f"app-{NODE}", "-o", "json"))
        assert pod_json["status"]["containerStatuses"][0]["containerID"].startswith("runc://")
        assert re.search(r"^\s+Container ID:\s+runc://", kubectl.out("describe", "pod", f"app-{NODE}"), re.M)
        assert kubectl.out("logs", f"app-{NODE}", "--tail", "1").strip() == "tick"
        follower = kubectl.popen("logs", "-f", f"app-{NODE}", "--tail", "0")
        try:
            time.sleep(1.5)
        finally:
            follower.terminate()
            followed, _ = follower.communicate(timeout=10)
        assert followed.count("tick") >= 3
        assert any("Started" in line for line in kubectl.out("get", "events").splitlines())
        top = wait_for(lambda: kubectl.run("top", "pods", check=False).stdout, what="kubectl top pods")
        assert f"app-{NODE}" in top
        assert kubectl.out("get", "nodes", "-o", "wide").splitlines()[1].split()[-1] == "runc://nodeagent"
    finally:
        runc.clean_up()


def test_a_taken_api_port_costs_the_https_listener_only(harness: AgentHarness) -> None:
    harness.use_host_network()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        harness.configure({"nodeagent": {"apiBindAddress": address}})
        harness.write("one.yaml", pod("one", "sleep 3600"))
        harness.start()
        wait_for(lambda: harness.pod("one")["status"]["phase"] == "Running", what="the pod running")
        assert f"the Kubernetes API is not served on {address} (nodeagent.apiBindAddress)" in harness.agent_log()


def test_kubectl_explain_reads_the_openapi_documents(kubectl: Kubectl) -> None:
    explained = kubectl.out("explain", "pods")
    assert "KIND:       Pod" in explained and re.search(r"^  spec\t<Object>$", explained, re.M)
    assert "map[string]string" in kubectl.out("explain", "pods.metadata.labels")
    assert "GROUP:      metrics.k8s.io" in kubectl.out("explain", "podmetrics")
