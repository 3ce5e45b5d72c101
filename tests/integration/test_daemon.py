"""The daemon on this machine's real cgroups with the process runtime: the docs' examples and the file rules."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLES
from tests.integration.harness import NODE, AgentHarness, wait_for

MiB = 1 << 20


def running(agent: AgentHarness, name: str, namespace: str = "default") -> dict[str, Any] | None:
    pod = agent.pod(name, namespace)
    statuses = pod["status"]["containerStatuses"]
    return pod if statuses and all("running" in s["state"] for s in statuses) else None


def events_for(agent: AgentHarness, reason: str) -> list[dict[str, Any]]:
    return [e for e in agent.events() if e["reason"] == reason]


def test_memory_demo_runs_under_its_limit(agent: AgentHarness) -> None:
    agent.write("memory-demo.yaml", (EXAMPLES / "memory-demo.yaml").read_text())
    wait_for(lambda: running(agent, "memory-demo", "mem-example"), what="memory-demo running")
    pod = agent.pod("memory-demo", "mem-example")
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["qosClass"] == "Burstable"
    container = agent.cgroup_path("memory-demo", "memory-demo-ctr", "mem-example")
    limit_file = "memory.max" if agent.cgroups.version == 2 else "memory.limit_in_bytes"
    assert agent.kernel(container, limit_file) == str(200 * MiB)
    assert agent.kernel(agent.cgroup_path("memory-demo", None, "mem-example"), limit_file) == str(200 * MiB)
    # stress allocates 150M: above the 100Mi request, below the 200Mi limit
    usage = wait_for(lambda: agent.cgroups.usage(container).memory_working_set_bytes > 140 * MiB
                     and agent.cgroups.usage(container).memory_working_set_bytes, what="150M in use")
    assert 140 * MiB < usage < 200 * MiB
    top = agent.cli("top", "pods").stdout
    assert "memory-demo-testnode" in top


def test_memory_demo_2_is_oom_killed_and_crash_loops(agent: AgentHarness) -> None:
    agent.write("memory-demo-2.yaml", (EXAMPLES / "memory-demo-2.yaml").read_text())

    def backing_off() -> dict[str, Any] | None:
        status = agent.container_status("memory-demo-2", "memory-demo-2-ctr", "mem-example")
        waiting = status["state"].get("waiting", {})
        return status if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for(backing_off, what="CrashLoopBackOff")
    last = status["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert status["restartCount"] >= 1
    assert "back-off 10s restarting failed container=memory-demo-2-ctr" in status["state"]["waiting"]["message"]
    assert events_for(agent, "BackOff")[0]["message"].startswith(
        "Back-off restarting failed container memory-demo-2-ctr in pod memory-demo-2-testnode_mem-example(")
    assert events_for(agent, "BackOff")[0]["type"] == "Warning"
    oom = events_for(agent, "OOMKilling")
    assert oom and oom[0]["type"] == "Warning" and "Killed process stress (pid " in oom[0]["message"]
    # after the 10 s back-off it runs (and is killed) again: RESTARTS grows
    first = status["restartCount"]
    wait_for(lambda: agent.container_status("memory-demo-2", "memory-demo-2-ctr", "mem-example")["restartCount"]
             > first, timeout=25, what="another restart")
    table = agent.cli("get", "pods").stdout
    assert "memory-demo-2-testnode" in table
    described = agent.cli("describe", "pod", "mem-example/memory-demo-2-testnode").stdout
    assert "Exit Code:   137" in described and "OOMKilled" in described
    assert f"memory.limit_in_bytes: {100 * MiB}" in described or f"memory.max: {100 * MiB}" in described
    assert "BackOff" in described


def test_init_container_runs_first_and_shares_the_empty_dir(agent: AgentHarness, tmp_path: Path) -> None:
    work = tmp_path / "work-dir"
    html = tmp_path / "html"
    agent.write("init-demo.yaml", f"""
apiVersion: v1
kind: Pod
metadata: {{name: init-demo}}
spec:
  containers:
  - name: nginx
    image: nginx
    command: [sh, -c, "cat {html}/index.html; exec sleep 3600"]
    volumeMounts: [{{name: workdir, mountPath: {html}}}]
  initContainers:
  - name: install
    image: busybox:1.28
    command: [sh, -c, "sleep 0.3; echo hello from the init container > {work}/index.html"]
    volumeMounts: [{{name: workdir, mountPath: {work}}}]
  volumes: [{{name: workdir, emptyDir: {{}}}}]
""")
    pod = wait_for(lambda: running(agent, "init-demo"), what="init-demo running")
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    app = pod["status"]["containerStatuses"][0]["state"]["running"]
    assert init["exitCode"] == 0 and init["reason"] == "Completed"
    assert init["finishedAt"] <= app["startedAt"]
    logs = wait_for(lambda: agent.cli("logs", "init-demo").stdout or None, what="logs")
    assert logs == "hello from the init container\n"
    # the emptyDir was mounted in the containers' own mount namespaces, not on the host
    assert not (work / "index.html").exists()


def test_init_status_words(agent: AgentHarness) -> None:
    agent.write("slow-init.yaml", """
kind: Pod
metadata: {name: slow-init}
spec:
  initContainers: [{name: wait, image: busybox, command: [sleep, "30"]}]
  containers: [{name: app, image: busybox, command: [sleep, "30"]}]
""")
    wait_for(lambda: "Init:0/1" in agent.cli("get", "pods").stdout, what="Init:0/1")
    pod = agent.pod("slow-init")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_empty_dir_survives_a_container_restart(agent: AgentHarness, tmp_path: Path) -> None:
    data = tmp_path / "data-redis"
    agent.write("redis.yaml", f"""
apiVersion: v1
kind: Pod
metadata: {{name: redis}}
spec:
  containers:
  - name: redis
    image: redis
    command: [sh, -c, "if [ -e {data}/marker ]; then echo found; else touch {data}/marker; echo new; fi; exec sleep 3600"]
    volumeMounts: [{{name: redis-storage, mountPath: {data}}}]
  volumes: [{{name: redis-storage, emptyDir: {{}}}}]
""")
    wait_for(lambda: running(agent, "redis"), what="redis running")
    # "new" is printed after the marker is made: killed before that, the second run would rightly say "new"
    wait_for(lambda: agent.cli("logs", "redis").stdout == "new\n", what="the first run's marker")
    container = agent.cgroup_path("redis", "redis")
    pid = wait_for(lambda: agent.procs(container), what="its process")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: agent.container_status("redis", "redis")["restartCount"] == 1
             and running(agent, "redis"), what="restart")
    row = agent.cli("get", "pods").stdout.splitlines()[1].split()
    assert row[:4] == [f"redis-{NODE}", "1/1", "Running", "1"]
    assert agent.cli("logs", "redis").stdout == "found\n"
    assert agent.cli("logs", "redis", "--previous").stdout == "new\n"
    last = agent.container_status("redis", "redis")["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "Error")


def test_changed_manifest_replaces_the_pod(agent: AgentHarness) -> None:
    manifest = "kind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
    agent.write("web.yaml", manifest)
    first = wait_for(lambda: running(agent, "web"), what="web running")
    old_uid = first["metadata"]["uid"]
    old_pod_cgroup = agent.cgroup_path("web")
    agent.write("web.yaml", manifest.replace("'3600'", "'3601'"))
    second = wait_for(lambda: running(agent, "web") if agent.pod("web")["metadata"]["uid"] != old_uid else None,
                      what="the new pod")
    assert second["spec"]["containers"][0]["command"] == ["sleep", "3601"]
    assert not agent.cgroups.exists(old_pod_cgroup)
    assert len([p for p in agent.pods() if p["metadata"]["name"] == f"web-{NODE}"]) == 1


def test_unchanged_manifest_is_a_no_op(agent: AgentHarness) -> None:
    manifest = "kind: Pod\nmetadata: {name: steady}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
    agent.write("steady.yaml", manifest)
    before = wait_for(lambda: running(agent, "steady"), what="running")
    agent.write("steady.yaml", manifest)  # same content, new inode and mtime
    time.sleep(2.5)  # a debounce and a periodic re-list later
    after = agent.pod("steady")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["containerID"] == before["status"]["containerStatuses"][0]["containerID"]


def test_removed_manifest_stops_the_pod_and_removes_its_cgroups(agent: AgentHarness) -> None:
    agent.write("gone.yaml", (EXAMPLES / "qos-guaranteed.yaml").read_text())
    wait_for(lambda: running(agent, "qos-demo", "qos-example"), what="running")
    pod_cgroup = agent.cgroup_path("qos-demo", None, "qos-example")
    container = agent.cgroup_path("qos-demo", "qos-demo-ctr", "qos-example")
    pids = agent.procs(container)
    agent.remove("gone.yaml")
    wait_for(lambda: not agent.pods(), what="the pod to leave the list")
    assert not agent.cgroups.exists(pod_cgroup)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    killing = [e for e in agent.events() if e["reason"] == "Killing"]
    assert killing and killing[0]["message"] == "Stopping container qos-demo-ctr"


def test_grace_period_then_sigkill(agent: AgentHarness) -> None:
    agent.write("stubborn.yaml", """
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers: [{name: c, image: x, command: [sh, -c, "trap '' TERM; echo trapped; while :; do sleep 0.1; done"]}]
""")
    wait_for(lambda: running(agent, "stubborn"), what="running")
    # Running is said once the process exists: a SIGTERM before its shell set the trap would end it at once
    wait_for(lambda: agent.cli("logs", "stubborn").stdout == "trapped\n", what="the trap set")
    started = time.monotonic()
    agent.remove("stubborn.yaml")
    wait_for(lambda: "Terminating" in agent.cli("get", "pods").stdout, what="Terminating", timeout=5)
    wait_for(lambda: not agent.pods(), what="gone", timeout=10)
    assert 1.9 < time.monotonic() - started < 6


def test_bad_manifest_is_reported_and_touches_nothing_else(agent: AgentHarness) -> None:
    agent.write("good.yaml", "kind: Pod\nmetadata: {name: good}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n")
    good = wait_for(lambda: running(agent, "good"), what="good running")
    agent.write("bad.yaml", "kind: Pod\nmetadata: {name: bad}\nspec:\n  containers: [{name: c, image: x, "
                            "resources: {limits: {memory: 12Q}}}, {name: c}]\n")
    event = wait_for(lambda: events_for(agent, "InvalidManifest"), what="InvalidManifest")[0]
    assert event["type"] == "Warning"
    assert str(agent.manifests / "bad.yaml") in event["message"]
    assert "spec.containers[0].resources.limits.memory: quantities must match" in event["message"]
    assert 'spec.containers[1].name: Duplicate value: "c"' in event["message"]
    assert "spec.containers[1].image: Required value" in event["message"]
    # garbage too
    agent.write("garbage.json", "\x7fELF\x01\x02")
    wait_for(lambda: any("garbage.json" in e["message"] for e in events_for(agent, "InvalidManifest")),
             what="garbage reported")
    assert [p["metadata"]["name"] for p in agent.pods()] == [f"good-{NODE}"]
    now = agent.pod("good")
    assert now["status"]["containerStatuses"][0]["containerID"] == good["status"]["containerStatuses"][0]["containerID"]
    assert agent.process is not None and agent.process.poll() is None


def test_a_broken_edit_keeps_the_last_valid_pod(agent: AgentHarness) -> None:
    manifest = "kind: Pod\nmetadata: {name: edited}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
    agent.write("edited.yaml", manifest)
    before = wait_for(lambda: running(agent, "edited"), what="running")
    agent.write("edited.yaml", manifest + "  restartPolicy: Sometimes\n")
    event = wait_for(lambda: events_for(agent, "InvalidManifest"), what="InvalidManifest")[0]
    assert "keeping its last valid version running" in event["message"]
    assert agent.pod("edited")["metadata"]["uid"] == before["metadata"]["uid"]


def test_duplicate_pod_names_first_file_wins(agent: AgentHarness) -> None:
    manifest = "kind: Pod\nmetadata: {name: twin}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '%s']}]\n"
    agent.write("a-twin.yaml", manifest % "3600")
    agent.write("b-twin.yaml", manifest % "3601")
    event = wait_for(lambda: events_for(agent, "DuplicateManifest"), what="DuplicateManifest")[0]
    assert str(agent.manifests / "a-twin.yaml") in event["message"]
    assert str(agent.manifests / "b-twin.yaml") in event["message"]
    assert event["type"] == "Warning"
    pod = wait_for(lambda: running(agent, "twin"), what="twin running")
    assert pod["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"


def test_dot_files_and_editor_leftovers_are_ignored(agent: AgentHarness) -> None:
    manifest = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
    for name in (".hidden.yaml", "web.yaml.bak", "web.yaml~", ".web.yaml.swp", "notes.txt"):
        (agent.manifests / name).write_text(manifest % "leftover")
    agent.write("real.yaml", manifest % "real")
    wait_for(lambda: running(agent, "real"), what="real running")
    time.sleep(2.5)
    assert [p["metadata"]["name"] for p in agent.pods()] == [f"real-{NODE}"]


def test_restart_policies(agent: AgentHarness) -> None:
    for policy, command in (("Never", "exit 3"), ("OnFailure", "exit 0"), ("Always", "exit 0")):
        agent.write(f"{policy.lower()}.yaml", f"""
kind: Pod
metadata: {{name: {policy.lower()}}}
spec:
  restartPolicy: {policy}
  containers: [{{name: c, image: x, command: [sh, -c, "{command}"]}}]
""")
    wait_for(lambda: agent.pod("never")["status"]["phase"] == "Failed", what="Never -> Failed")
    wait_for(lambda: agent.pod("onfailure")["status"]["phase"] == "Succeeded", what="OnFailure -> Succeeded")
    never = agent.container_status("never", "c")
    assert never["state"]["terminated"]["exitCode"] == 3 and never["state"]["terminated"]["reason"] == "Error"
    assert never["restartCount"] == 0
    assert agent.container_status("onfailure", "c")["state"]["terminated"]["reason"] == "Completed"
    wait_for(lambda: agent.container_status("always", "c")["restartCount"] >= 1, what="Always restarts")
    assert agent.pod("always")["status"]["phase"] == "Running"
    words = agent.cli("get", "pods").stdout
    assert "Error" in words and "Completed" in words


def test_container_environment_user_and_working_dir(agent: AgentHarness, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir()
    agent.write("env.yaml", f"""
kind: Pod
metadata: {{name: env, labels: {{app: shop}}}}
spec:
  securityContext: {{runAsUser: 65534, runAsGroup: 65534}}
  containers:
  - name: c
    image: x
    workingDir: {workdir}
    command: [sh, -c, 'echo "$POD_NAME $POD_NAMESPACE $APP $GREETING $(id -u) $(pwd)"; sleep 3600']
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
    - {{name: NAME, value: world}}
    - {{name: GREETING, value: "hello-$(NAME)"}}
""")
    wait_for(lambda: running(agent, "env"), what="running")
    line = wait_for(lambda: agent.cli("logs", "env").stdout or None, what="output")
    assert line == f"env-{NODE} default shop hello-world 65534 {workdir}\n"


def test_the_environment_is_exactly_the_pods(agent: AgentHarness) -> None:
    """The launcher's shell (dash) dropped names that are no shell identifiers (Kubernetes allows any printable
    name without "="), added PWD, and looked its own tools up in the container's PATH."""
    agent.write("exact.yaml", """
kind: Pod
metadata: {name: exact}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: x
    command: [/usr/bin/env]
    env:
    - {name: A.B, value: dotted}
    - {name: my-name, value: dashed}
    - {name: PATH, value: /nowhere}
""")
    wait_for(lambda: agent.pod("exact")["status"]["phase"] == "Succeeded", what="its end")
    expected = ["A.B=dotted", f"HOSTNAME=exact-{NODE}", "PATH=/nowhere", "my-name=dashed"]
    assert sorted(agent.cli("logs", "exact").stdout.splitlines()) == expected
    # and what exec runs in a container (kubectl exec, probes, hooks)
    agent.write("exact.yaml", agent.manifests.joinpath("exact.yaml").read_text()
                .replace("[/usr/bin/env]", "[/bin/sleep, '3600']").replace("Never", "Always"))
    wait_for(lambda: running(agent, "exact"), what="running")
    assert sorted(agent.cli("exec", f"exact-{NODE}", "/usr/bin/env").stdout.splitlines()) == expected


def test_missing_command_is_a_create_container_error(agent: AgentHarness) -> None:
    agent.write("nocmd.yaml", "kind: Pod\nmetadata: {name: nocmd}\nspec:\n  containers: [{name: c, image: nginx}]\n")

    def failed() -> dict[str, Any] | None:
        waiting = agent.container_status("nocmd", "c")["state"].get("waiting", {})
        return waiting if waiting.get("reason") == "CreateContainerError" else None

    waiting = wait_for(failed, what="CreateContainerError")
    assert "needs `command`" in str(waiting["message"])
    assert "CreateContainerError" in agent.cli("get", "pods").stdout


def test_get_and_events_json_are_kubernetes_lists(agent: AgentHarness) -> None:
    agent.write("static-web.yaml", (EXAMPLES / "static-web.yaml").read_text())
    wait_for(lambda: running(agent, "static-web"), what="running")
    pods = json.loads(agent.cli("get", "pods", "-o", "json").stdout)
    assert pods["kind"] == "PodList" and pods["apiVersion"] == "v1"
    pod = pods["items"][0]
    assert pod["metadata"]["name"] == f"static-web-{NODE}"
    assert pod["metadata"]["labels"] == {"role": "myrole"}
    assert {"kubernetes.io/config.hash", "kubernetes.io/config.source"} <= set(pod["metadata"]["annotations"])
    status = pod["status"]
    assert status["phase"] == "Running" and status["qosClass"] == "BestEffort"
    assert {c["type"] for c in status["conditions"]} >= {"Initialized", "Ready", "ContainersReady", "PodScheduled"}
    container = status["containerStatuses"][0]
    assert container["ready"] is True and container["restartCount"] == 0
    assert container["containerID"].startswith("process://") and "startedAt" in container["state"]["running"]
    one = json.loads(agent.cli("get", "pod", "static-web", "-o", "json").stdout)
    assert one["metadata"]["uid"] == pod["metadata"]["uid"]
    table = agent.client.get(f"/api/v1/namespaces/default/pods/static-web-{NODE}", view="table")
    assert table["kind"] == "Table" and [r["cells"][0] for r in table["rows"]] == [f"static-web-{NODE}"]
    listed, shown = (agent.cli("get", *what, "-o", "wide").stdout.splitlines() for what in (("pods",), ("pod", "static-web")))
    assert shown[0] == listed[0] and shown[1].split()[:4] == listed[1].split()[:4]
    events = json.loads(agent.cli("events", "-o", "json").stdout)
    assert events["kind"] == "EventList"
    started = next(e for e in events["items"] if e["reason"] == "Started")
    assert started["involvedObject"]["name"] == f"static-web-{NODE}"
    assert {"type", "message", "count", "firstTimestamp", "lastTimestamp"} <= set(started)


def test_cli_without_an_agent_says_so_in_one_line(agent: AgentHarness) -> None:
    agent.stop()
    done = agent.cli("get", "pods", check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no nodeagent answers on" in done.stderr
