"""Issue 16's termination fields on real pods (root, process runtime): termination messages (File and
FallbackToLogsOnError), activeDeadlineSeconds, lifecycle.stopSignal and a probe's own grace period."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.integration.harness import AgentHarness, wait_for


@pytest.fixture
def agent(agent: AgentHarness) -> Iterator[AgentHarness]:
    """The test's pods are removed at its end: their host mount points (the process runtime makes
    /dev/termination-log on the host, as for any mount target) go with them."""
    yield agent
    for manifest in agent.manifests.iterdir():
        manifest.unlink()
    wait_for(lambda: not agent.pods(), timeout=60, what="the pods gone")


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
    ended = run_once(agent, "ownpath", "printf 'bye' > /tmp/na-test-msg/why; exit 3",
                     "    terminationMessagePath: /tmp/na-test-msg/why\n")
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
