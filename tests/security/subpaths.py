"""What the subPath tests share: the escaping pod, its refusal's words, the mounts the agent left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.harness import AgentHarness

REFUSED = 'failed to prepare subPath for volumeMount "shared" of container "victim"'


def mounts_under(directory: Path, pid: int | None = None) -> list[str]:
    """Mount points at or below `directory` in the test's mount namespace (or that of process `pid`)."""
    top = str(directory)
    found = []
    for line in Path(f"/proc/{pid or 'self'}/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == top or point.startswith(top + "/"):
            found.append(point)
    return found


def waiting(agent: AgentHarness, pod: str, container: str) -> dict[str, Any] | None:
    state = agent.container_status(pod, container)["state"]
    return state.get("waiting") if state.get("waiting", {}).get("reason") == "CreateContainerConfigError" else None


def escape_pod(name: str, shared: Path, mount: Path, outside: Path, image: str = "busybox") -> str:
    return f"""
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: plant
    image: {image}
    command: [sh, -c, "ln -s / {shared}/escape"]
    volumeMounts: [{{name: shared, mountPath: {shared}}}]
  containers:
  - name: victim
    image: {image}
    command: [sh, -c, "cat {mount}{outside}/canary; touch {mount}{outside}/written; exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: {mount}, subPath: escape}}]
  volumes: [{{name: shared, emptyDir: {{}}}}]
"""
