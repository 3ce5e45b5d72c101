"""Issue 16's termination fields on real pods (root, process runtime): termination messages (File and
FallbackToLogsOnError), activeDeadlineSeconds, lifecycle.stopSignal and a probe's own grace period."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.test_kubeapi import MIN_KUBECTL_MINOR, Kubectl, kubectl_minor, make_kubeconfig

OWN_PATH = "/tmp/na-test-msg/why"


@pytest.fixture
def agent(agent: AgentHarness) -> Iterator[AgentHarness]:
    """The test's pods are removed at its end, with the mount targets they made on the host; the process
    runtime keeps a termination message target it made (every pod may mount it): the test removes its own
    (the harness /dev/termination-log)."""
    made = not os.path.lexists(OWN_PATH)
    yield agent
    for manifest in agent.manifests.iterdir():
        manifest.unlink()
    wait_for(lambda: not agent.pods(), timeout=60, what="the pods gone")
    if made and os.path.isfile(OWN_PATH):
        os.unlink(OWN_PATH)
        os.rmdir(os.path.dirname(OWN_PATH))


def run_once(agent: AgentHarness, name: str, script: str, container: str = "", spec: str = "") -> dict:  # type: ignore[type-arg]
    agent.write(f"{name}.yaml", f"""
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
{spec}  containers:
  - name: c
    image: x
    command: [sh, -c, {json.dumps(script)}]
{container}""")
    wait_for(lambda: "terminated" in agent.container_status(name, "c")["state"], what=f"{name} done")
    return agent.container_status(name, "c")["state"]["terminated"]  # type: ignore[no-any-return]


def test_the_termination_message_file(agent: AgentHarness) -> None:
    ended = run_once(agent, "said", "echo 'Sleep expired' > /dev/termination-log")
    assert ended["message"] == "Sleep expired\n"
    assert ended["reason"] == "Completed"
    assert "Sleep expired" in agent.cli("describe", "pod", "said").stdout


def test_a_termination_message_path_of_its_own(agent: AgentHarness) -> None:
    ended = run_once(agent, "ownpath", f"printf 'bye' > {OWN_PATH}; exit 3",
                     f"    terminationMessagePath: {OWN_PATH}\n")
    assert ended["message"] == "bye"
    assert ended["exitCode"] == 3


def test_fallback_to_logs_on_error(agent: AgentHarness) -> None:
    ended = run_once(agent, "fallback", "seq 1 100; echo failing >&2; exit 1",
                     "    terminationMessagePolicy: FallbackToLogsOnError\n")
    assert ended["message"] == "".join(f"{i}\n" for i in range(22, 101)) + "failing\n"


def test_no_fallback_when_it_succeeds_or_with_the_file_policy(agent: AgentHarness) -> None:
    assert "message" not in run_once(agent, "fine", "echo output", "    terminationMessagePolicy: FallbackToLogsOnError\n")
    assert "message" not in run_once(agent, "plain", "echo output; exit 1")


def test_a_hostile_message_is_cut_and_the_agent_lives(agent: AgentHarness) -> None:
    ended = run_once(agent, "huge", "head -c 100000 /dev/zero | tr '\\0' a > /dev/termination-log; exit 1")
    assert ended["message"] == "a" * 4096
    ended = run_once(agent, "binary", "printf 'x\\377y' > /dev/termination-log")
    assert ended["message"] == "x\ufffdy"
    assert agent.pod("huge")["status"]["phase"] == "Failed"


def test_a_restarted_containers_last_message(agent: AgentHarness) -> None:
    agent.write("again.yaml", """
kind: Pod
metadata: {name: again}
spec:
  restartPolicy: OnFailure
  containers:
  - name: c
    image: x
    command: [sh, -c, 'if [ -e /tmp/na-test-again ]; then sleep 3600; fi; touch /tmp/na-test-again; echo first > /dev/termination-log; exit 1']
""")
    try:
        wait_for(lambda: agent.container_status("again", "c")["restartCount"] == 1
                 and "running" in agent.container_status("again", "c")["state"], timeout=30, what="restarted")
        assert agent.container_status("again", "c")["lastState"]["terminated"]["message"] == "first\n"
    finally:
        if os.path.exists("/tmp/na-test-again"):
            os.unlink("/tmp/na-test-again")


DEADLINED = """
kind: Pod
metadata: {name: %s}
spec:
  activeDeadlineSeconds: %d
  terminationGracePeriodSeconds: 2
  containers:
  - {name: c, image: x, command: [sleep, '3600']}
"""


def deadline_failed(agent: AgentHarness, name: str) -> bool:
    status = agent.pod(name)["status"]
    return status["phase"] == "Failed" and "terminated" in status["containerStatuses"][0]["state"]


def test_active_deadline_seconds_fails_the_pod_and_stops_its_containers(agent: AgentHarness) -> None:
    agent.write("deadline.yaml", DEADLINED % ("deadline", 3))
    wait_for(lambda: "running" in agent.container_status("deadline", "c")["state"], what="running")
    started = agent.pod("deadline")["status"]["startTime"]
    wait_for(lambda: deadline_failed(agent, "deadline"), timeout=20, what="failed by its deadline")
    status = agent.pod("deadline")["status"]
    assert status["reason"] == "DeadlineExceeded"
    assert status["message"] == "Pod was active on the node longer than the specified deadline"
    assert status["startTime"] == started
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143  # SIGTERM
    assert [(e["type"], e["message"]) for e in agent.events() if e["reason"] == "DeadlineExceeded"] == [
        ("Normal", "Pod was active on the node longer than the specified deadline")]
    assert "Reason:           DeadlineExceeded\n" in agent.cli("describe", "pod", "deadline").stdout
    time.sleep(2)  # restartPolicy Always: still nothing restarts
    assert agent.container_status("deadline", "c")["restartCount"] == 0
    assert agent.pod("deadline")["status"]["phase"] == "Failed"


def test_the_deadline_holds_across_an_agent_restart(agent: AgentHarness) -> None:
    agent.write("outlived.yaml", DEADLINED % ("outlived", 4))
    wait_for(lambda: "running" in agent.container_status("outlived", "c")["state"], what="running")
    # the runtime's start shell execs the command: one process once it has
    [pid] = wait_for(lambda: len(procs := agent.procs(agent.cgroup_path("outlived", "c"))) == 1 and procs,
                     what="one process")
    agent.stop()  # the pods keep running
    time.sleep(4)
    agent.start()
    wait_for(lambda: deadline_failed(agent, "outlived"), timeout=20, what="failed at once")
    assert agent.pod("outlived")["status"]["reason"] == "DeadlineExceeded"
    assert not os.path.exists(f"/proc/{pid}")  # stopped, not merely shown as stopped
    agent.stop()
    agent.start()  # failed before the restart: still failed, for the same reason, nothing started
    wait_for(lambda: agent.pod("outlived")["status"].get("reason") == "DeadlineExceeded", what="still failed")
    time.sleep(1)
    status = agent.pod("outlived")["status"]
    assert status["phase"] == "Failed" and status["containerStatuses"][0]["restartCount"] == 0


def test_a_pod_that_finished_before_its_deadline_keeps_its_phase(agent: AgentHarness) -> None:
    agent.write("quick.yaml", """
kind: Pod
metadata: {name: quick}
spec:
  activeDeadlineSeconds: 2
  restartPolicy: Never
  containers:
  - {name: c, image: x, command: ['true']}
""")
    wait_for(lambda: agent.pod("quick")["status"]["phase"] == "Succeeded", what="succeeded")
    time.sleep(3)
    status = agent.pod("quick")["status"]
    assert status["phase"] == "Succeeded" and "reason" not in status


def test_the_stop_signal_of_the_container(agent: AgentHarness) -> None:
    """lifecycle.stopSignal: a liveness kill (and any stop) sends it instead of SIGTERM."""
    agent.write("usr1.yaml", """
kind: Pod
metadata: {name: usr1}
spec:
  os: {name: linux}
  containers:
  - name: c
    image: x
    command: [sh, -c, "trap 'echo stopped by USR1 > /dev/termination-log; exit 7' USR1; while :; do sleep 0.1; done"]
    lifecycle: {stopSignal: SIGUSR1}
    livenessProbe: {exec: {command: ['false']}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
""")
    wait_for(lambda: agent.container_status("usr1", "c").get("lastState", {}).get("terminated"), timeout=30,
             what="killed by its probe")
    last = agent.container_status("usr1", "c")["lastState"]["terminated"]
    assert (last["exitCode"], last.get("message")) == (7, "stopped by USR1\n"), last


def test_a_liveness_probes_own_grace_period(agent: AgentHarness) -> None:
    """The pod's 60 s would keep a container that ignores SIGTERM; the probe's 2 s end it sooner."""
    agent.write("stubborn.yaml", """
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: x
    command: [sh, -c, "trap '' TERM; while :; do sleep 0.1; done"]
    livenessProbe: {exec: {command: ['false']}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1,
                    terminationGracePeriodSeconds: 2}
""")
    wait_for(lambda: agent.container_status("stubborn", "c").get("lastState", {}).get("terminated"), timeout=20,
             what="killed after the probe's grace period")
    last = agent.container_status("stubborn", "c")["lastState"]["terminated"]
    assert last["exitCode"] == 137
    killing = [e for e in agent.events() if e["reason"] == "Killing"]
    assert killing and killing[0]["message"] == "Container c failed liveness probe, will be restarted"


def test_a_pod_gone_leaves_the_others_termination_message_file(agent: AgentHarness) -> None:
    """Every process pod mounts /dev/termination-log over the same host path: the first pod's going must not
    take it (an unlinked mount point is unmounted from every other container too)."""
    agent.write("first.yaml", "kind: Pod\nmetadata: {name: first}\nspec:\n  terminationGracePeriodSeconds: 2\n"
                              "  containers: [{name: c, image: x, command: [sleep, '3600']}]\n")
    wait_for(lambda: "running" in agent.container_status("first", "c")["state"], what="first running")
    go = agent.root / "go"
    try:
        agent.write("second.yaml", f"""
kind: Pod
metadata: {{name: second}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: x
    command: [sh, -c, 'while [ ! -e {go} ]; do sleep 0.1; done; echo said > /dev/termination-log']
""")
        wait_for(lambda: "running" in agent.container_status("second", "c")["state"], what="second running")
        agent.remove("first.yaml")
        wait_for(lambda: [p["metadata"]["name"] for p in agent.pods()] == ["second-testnode"], what="first gone")
        go.touch()
        wait_for(lambda: "terminated" in agent.container_status("second", "c")["state"], what="second done")
        assert agent.container_status("second", "c")["state"]["terminated"].get("message") == "said\n"
    finally:
        go.touch()


def test_kubectl_reads_the_message_and_the_deadline(agent: AgentHarness) -> None:
    """The kubeapi pod status is the same: kubectl's jsonpath and describe show them."""
    if (kubectl_minor() or 0) < MIN_KUBECTL_MINOR:
        pytest.skip(f"needs kubectl 1.{MIN_KUBECTL_MINOR}+")
    kubectl = Kubectl(agent, make_kubeconfig(agent, agent.root / "admin.kubeconfig"))
    run_once(agent, "told", "echo told > /dev/termination-log; exit 4")
    path = "{.status.containerStatuses[0].state.terminated.message}"
    assert kubectl.out("get", "pod", f"told-{NODE}", "-o", f"jsonpath={path}") == "told\n"
    agent.write("late.yaml", DEADLINED % ("late", 2))
    wait_for(lambda: deadline_failed(agent, "late"), timeout=20, what="failed by its deadline")
    described = kubectl.out("describe", "pod", f"late-{NODE}")
    assert "DeadlineExceeded" in described and "Pod was active on the node longer than the specified" in described


@pytest.mark.parametrize(("swap", "error"), [
    ("mkfifo", "not a regular file"), ("ln -s /etc/shadow", "Too many levels of symbolic links")])
def test_a_host_process_swapping_its_message_file_gets_an_error_message(agent: AgentHarness, swap: str,
                                                                         error: str) -> None:
    """A process container can reach its file in the state directory: a FIFO there must not hang the agent,
    a symlink must not show what it points to."""
    files = f"{agent.state}/pods/*/containers/c/0"
    ended = run_once(agent, "swapper", f"for f in {files}; do rm -f $f; {swap} $f; done; exit 1")
    assert ended["message"].startswith("Error on reading termination log ") and ended["message"].endswith(error)
    assert "root:" not in ended["message"]
    assert run_once(agent, "after", "echo fine > /dev/termination-log")["message"] == "fine\n"  # the agent goes on
