"""A mountPath the process runtime cannot make (issue 12 item 13): a start error and the normal retry,
never a wedged pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.harness import NODE, AgentHarness, wait_for


def failed_events(agent: AgentHarness, pod: str) -> list[dict[str, Any]]:
    return [e for e in agent.events()
            if e["involvedObject"].get("name") == f"{pod}-{NODE}" and e["reason"] == "Failed"]


def refused_start(agent: AgentHarness, pod: str, mount_path: Path | str) -> dict[str, Any]:
    """A pod whose one container mounts an emptyDir at `mount_path`: its waiting state once it is a
    RunContainerError."""
    agent.write(f"{pod}.yaml", f"""
kind: Pod
metadata: {{name: {pod}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: scratch, mountPath: {mount_path}}}]
  volumes: [{{name: scratch, emptyDir: {{}}}}]
""")
    waiting: dict[str, Any] = wait_for(
        lambda: agent.container_status(pod, "app")["state"].get("waiting", {}).get("reason") == "RunContainerError"
        and agent.container_status(pod, "app")["state"]["waiting"], what="RunContainerError")
    return waiting


def test_a_mount_path_through_a_regular_file_is_a_start_error(agent: AgentHarness, tmp_path: Path) -> None:
    regular = tmp_path / "regular-file"
    regular.write_text("not a directory\n")
    waiting = refused_start(agent, "through-file", f"{regular}/x")
    assert f"{regular}/x" in waiting["message"] and "not a directory" in waiting["message"]
    events = failed_events(agent, "through-file")
    assert events and events[0]["type"] == "Warning" and events[0]["message"].startswith("Error: ")
    # retried at the sync back-off (10 s), not wedged
    wait_for(lambda: sum(e["count"] for e in failed_events(agent, "through-file")) >= 2, timeout=20,
             what="a second attempt")
    assert regular.read_text() == "not a directory\n"
    agent.remove("through-file.yaml")
    wait_for(lambda: not any(p["metadata"]["name"] == f"through-file-{NODE}" for p in agent.pods()),
             what="the pod gone")


def test_a_directory_volume_over_an_existing_file_is_a_start_error(agent: AgentHarness, tmp_path: Path) -> None:
    regular = tmp_path / "regular-file"
    regular.write_text("kept\n")
    waiting = refused_start(agent, "over-file", regular)
    assert str(regular) in waiting["message"] and "not a directory" in waiting["message"]
    assert agent.container_status("over-file", "app")["restartCount"] == 0
    assert regular.read_text() == "kept\n"
