"""The invariants of a chaos run that look at the agent's answers and the machine (the sampler has its own):

- History: restart counts never go backwards while a pod exists; a container that restarted has a last
  state with its exit code and reason; when the count went up by one, that last state is the attempt
  seen running before (or the next one, if it has ended too): no attempt ends unrecorded.
- Convergence: the agent runs exactly the desired pods, each container running (one live instance, of the
  right pod version) or backing off (none live), and no other pod cgroup exists.
- Leaks: once every manifest is gone, nothing of the run is left anywhere.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodeagent.network.model import netns_name
from nodeagent.sources.merge import Desired
from tests.chaos import faults
from tests.chaos.backends import Backend
from tests.chaos.sampler import Instance, leftovers
from tests.integration.harness import NODE, AgentHarness
from tests.integration.netns_fixtures import links_in, nft_tables_in

# the node's own links, the agent's bridge and the test containerd's CNI bridge
BRIDGES = {"lo", "ext0", "nodeagent0", "natest0"}
SETTLED_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"}


class History:
    """What the API said of each container before: (restart count, the container ID seen running)."""

    def __init__(self, violation: Callable[[str], None]) -> None:
        self.violation = violation
        self.seen: dict[tuple[str, str], tuple[int, str]] = {}

    def check(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            for status in pod["status"].get("containerStatuses", []):
                self._check(pod, status)
        uids = {pod["metadata"]["uid"] for pod in pods}
        for key in [k for k in self.seen if k[0] not in uids]:  # a pod gone: its UID may come back anew
            del self.seen[key]

    def _check(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        key = (pod["metadata"]["uid"], status["name"])
        name = f"{pod['metadata']['name']}/{status['name']}"
        count, container_id = status.get("restartCount", 0), status.get("containerID", "")
        before = self.seen.get(key)
        last = status.get("lastState", {}).get("terminated")
        running = "running" in status.get("state", {})
        if before is not None and count < before[0]:
            self.violation(f"{name}: restart count went back from {before[0]} to {count}")
        if count > 0 and (last is None or last.get("exitCode") is None or not last.get("reason")):
            self.violation(f"{name}: restarted {count} times, last state {last}")
        if before is not None and count == before[0] + 1 and before[1] and last is not None and \
                last.get("containerID") not in ({before[1]} if running else {before[1], container_id}):
            self.violation(f"{name}: attempt {before[1]} ended unrecorded: now {json.dumps(status)}")
        if before is None or count >= before[0]:
            self.seen[key] = (count, container_id if running else "")


def convergence_problems(desired: Desired, pods: list[dict[str, Any]], instances: list[Instance],
                         cgroups: set[str]) -> list[str]:
    """What keeps the agent from having converged on the desired set (nothing: it has)."""
    want = {pod.uid: pod for pod in desired.pods}
    have = {pod["metadata"]["uid"]: pod for pod in pods}
    problems = [f"pod {have[uid]['metadata']['name']} ({uid[:8]}) should not exist" for uid in set(have) - set(want)]
    problems += [f"pod {want[uid].pod.metadata.name} ({uid[:8]}) is missing" for uid in set(want) - set(have)]
    for uid in set(want) & set(have):
        name = have[uid]["metadata"]["name"].removesuffix(f"-{NODE}")
        for status in have[uid]["status"].get("containerStatuses", []):
            live = [i for i in instances if i.chaos_id == f"{name}/{status['name']}"]
            state = status.get("state", {})
            if "running" in state:
                if len(live) != 1 or live[0].uid != uid:
                    problems.append(f"{name}/{status['name']} is running, live instances: {live}")
            elif state.get("waiting", {}).get("reason") in SETTLED_WAITING:
                if live:
                    problems.append(f"{name}/{status['name']} is backing off, live instances: {live}")
            else:
                problems.append(f"{name}/{status['name']} is {state}")
    problems += [f"instance of a pod that should not run: {i}" for i in instances if i.uid not in want]
    problems += [f"pod cgroup {uid[:8]} without a desired pod" for uid in cgroups - set(want)]
    return problems


def pod_cgroups(harness: AgentHarness) -> set[str]:
    """The UIDs of the pod cgroups under the agent's cgroupRoot."""
    found = set()
    for parent in ("kubepods", "kubepods/burstable", "kubepods/besteffort"):
        with contextlib.suppress(OSError):
            for child in harness.cgroups.children(f"{harness.cgroup_root}/{parent}"):
                if child.startswith("pod"):
                    found.add(child[3:])
    return found


class Leaks:
    def __init__(self, harness: AgentHarness, backend: Backend, run: str, netns: str | None,
                 every_uid: set[str]) -> None:
        self.harness = harness
        self.backend = backend
        self.run = run
        self.netns = netns
        self.every_uid = every_uid  # each UID the run ever wanted (the model adds to it)

    def found(self) -> list[str]:
        harness, state = self.harness, self.harness.state
        found = [f"pod cgroup {uid}" for uid in pod_cgroups(harness)]
        found += [f"process {p}" for p in leftovers(self.run)]
        found += [f"conmon {pid}" for pid in faults.monitors(str(state))]
        found += [f"process {pid} outside the agent's cgroups" for pid in harness.outside_processes()]
        found += [f"mount {line.split()[1]}" for line in Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(harness.root)) and line.split()[1] != str(state)]
        netns = {netns_name(uid) for uid in self.every_uid}
        found += [f"netns {name}" for name in sorted(netns & set(_listdir(Path("/run/netns"))))]
        if self.netns is not None:
            found += [f"link {link}" for link in links_in(self.netns) if link not in BRIDGES]
            found += [f"nft table {table}" for table in nft_tables_in(self.netns) if table == "ip nodeagent"]
        with contextlib.suppress(FileNotFoundError, ValueError):
            leases = json.loads((state / "network" / "leases.json").read_text())["leases"]
            found += [f"lease {lease}" for lease in leases]
        for directory in ("pods", "containers", "exits", "sockets"):
            found += [f"{directory}/{name}" for name in _listdir(state / directory)]
        return found + self.backend.leaks(harness)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except FileNotFoundError:
        return []
