"""A mountPath the process runtime cannot make (issue 12 item 13): a start error and the normal retry,
never a wedged pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.harness import NODE, AgentHarness, wait_for


def failed_events(agent: AgentHarness, pod: str) -> list[dict[str, Any]]:
    return [e for e in agent.events()
            if e["involvedObject"].get("name") == f"{pod}-{NODE}" and e["reason"] == "Failed"]


def test_a_mount_path_through_a_regular_file_is_a_start_error(agent: AgentHarness, tmp_path: Path) -> None:
    regular = tmp_path / "regular-file"
    regular.write_text("not a directory\n")
    agent.write("through-file.yaml", f"""
kind: Pod
metadata: {{name: through-file}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: scratch, mountPath: {regular}/x}}]
  volumes: [{{name: scratch, emptyDir: {{}}}}]
""")
    waiting = wait_for(lambda: agent.container_status("through-file", "app")["state"].get("waiting", {})
                       .get("reason") == "RunContainerError"
                       and agent.container_status("through-file", "app")["state"]["waiting"], what="RunContainerError")
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
    agent.write("over-file.yaml", f"""
kind: Pod
metadata: {{name: over-file}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: scratch, mountPath: {regular}}}]
  volumes: [{{name: scratch, emptyDir: {{}}}}]
""")
    waiting = wait_for(lambda: agent.container_status("over-file", "app")["state"].get("waiting", {})
                       .get("reason") == "RunContainerError"
                       and agent.container_status("over-file", "app")["state"]["waiting"], what="RunContainerError")
    assert str(regular) in waiting["message"] and "not a directory" in waiting["message"]
    assert agent.container_status("over-file", "app")["restartCount"] == 0
    assert regular.read_text() == "kept\n"
