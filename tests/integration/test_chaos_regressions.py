"""Deterministic regression tests for what the chaos suite (tests/chaos) found, one per fault."""

from __future__ import annotations

import signal

from tests.integration.harness import AgentHarness, wait_for

SLEEPER = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
BROKEN = ("kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600'], "
          "resources: {limits: {memory: lots}}}]\n")


def running_id(agent: AgentHarness, pod: str) -> str | None:
    status = agent.container_status(pod, "c")
    return status["containerID"] if "running" in status["state"] else None


def test_a_file_made_invalid_keeps_its_pod_across_an_agent_restart(agent: AgentHarness) -> None:
    """Found by chaos: "bad files never cost a running pod" held only while the agent ran; a restart with
    the file invalid forgot its last valid version and stopped the pod."""
    agent.write("steady.yaml", SLEEPER % "steady")
    before = wait_for(lambda: running_id(agent, "steady"), what="running")
    agent.write("steady.yaml", BROKEN % "steady")
    wait_for(lambda: any(e["reason"] == "InvalidManifest" for e in agent.events()), what="InvalidManifest")
    agent.stop(signal.SIGKILL)
    agent.start()
    wait_for(lambda: any(e["reason"] == "InvalidManifest" for e in agent.events()), what="InvalidManifest again")
    assert running_id(agent, "steady") == before
    agent.write("steady.yaml", SLEEPER.replace("3600", "3601") % "steady")  # fixed: the new version replaces it
    wait_for(lambda: running_id(agent, "steady") not in (None, before), what="the fixed version running")
