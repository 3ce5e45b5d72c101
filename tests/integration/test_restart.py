"""The agent dies and comes back: nothing lost, nothing duplicated, nothing leaked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from nodeagent.cgroups.detect import detect_layout
from nodeagent.errors import AgentUnavailableError
from tests.integration.harness import NODE, AgentHarness, wait_for

SLEEPER = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"
CRASHER = ("kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, "
           "command: [sh, -c, 'sleep 0.2; exit 1']}]\n")
STUBBORN = ("kind: Pod\nmetadata: {name: stubborn}\nspec:\n  terminationGracePeriodSeconds: 4\n"
            "  containers: [{name: c, image: x, command: [sh, -c, \"trap '' TERM; while :; do sleep 0.1; done\"]}]\n")


def container(agent: AgentHarness, pod: str) -> dict[str, Any]:
    return agent.container_status(pod, "c")


def is_running(agent: AgentHarness, pod: str) -> bool:
    return "running" in container(agent, pod)["state"]


def pod_cgroups(agent: AgentHarness) -> set[str]:
    """Every pod cgroup under the test's kubepods (Guaranteed ones sit directly in it)."""
    found = set()
    for parent in ("kubepods", "kubepods/burstable", "kubepods/besteffort"):
        for child in agent.cgroups.children(f"{agent.cgroup_root}/{parent}"):
            if child.startswith("pod"):
                found.add(child[3:])
    return found


def test_sigkill_with_twenty_pods_loses_and_duplicates_nothing(agent: AgentHarness) -> None:
    sleepers = [f"sleeper-{i}" for i in range(16)]
    for name in sleepers:
        agent.write(f"{name}.yaml", SLEEPER % name)
    for name in ("crasher-a", "crasher-b"):
        agent.write(f"{name}.yaml", CRASHER % name)
    agent.write("stubborn.yaml", STUBBORN)
    wait_for(lambda: all(is_running(agent, name) for name in [*sleepers, "stubborn"]), timeout=30, what="running")
    wait_for(lambda: all(container(agent, n)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
                         for n in ("crasher-a", "crasher-b")), timeout=20, what="crash loops")
    before = {name: container(agent, name) for name in [*sleepers, "crasher-a", "crasher-b"]}
    # one process each once its launcher's last exec is done (running is shown from the go on: a loaded CI saw
    # a sleeper's cgroup with two at once)
    def single_pids() -> dict[str, list[int]] | None:
        found = {name: agent.procs(agent.cgroup_path(name, "c")) for name in sleepers}
        return found if all(len(p) == 1 for p in found.values()) else None

    pids = wait_for(single_pids, what="one process per sleeper")

    agent.remove("stubborn.yaml")  # being stopped when the agent dies
    wait_for(lambda: "Terminating" in agent.cli("get", "pods").stdout, what="stubborn terminating")
    agent.write("newcomer.yaml", SLEEPER % "newcomer")  # being started when the agent dies
    time.sleep(0.05)
    agent.stop(signal.SIGKILL)

    agent.start()
    wait_for(lambda: all(is_running(agent, name) for name in [*sleepers, "newcomer"]), timeout=30,
             what="everything running again")
    for name in sleepers:
        now = container(agent, name)
        assert now["containerID"] == before[name]["containerID"], name
        assert now["restartCount"] == before[name]["restartCount"] == 0
        assert agent.procs(agent.cgroup_path(name, "c")) == pids[name], name
    for name in ("crasher-a", "crasher-b"):
        now = container(agent, name)
        assert now["restartCount"] >= before[name]["restartCount"] >= 1
        assert now["lastState"]["terminated"]["exitCode"] == 1
    assert len(agent.procs(agent.cgroup_path("newcomer", "c"))) == 1  # one copy, not two
    wait_for(lambda: f"stubborn-{NODE}" not in agent.cli("get", "pods").stdout, timeout=15, what="stubborn stopped")
    listed = {p["metadata"]["uid"] for p in agent.pods()}
    wait_for(lambda: pod_cgroups(agent) == listed, timeout=10, what="exactly one cgroup per pod")
    assert len(listed) == 19
    conmons = subprocess.run(["pgrep", "-f", f"conmon.*{agent.state}"], capture_output=True, text=True).stdout.split()
    assert len(conmons) == 17  # one per running container: 16 sleepers and the newcomer (crashers are waiting)
    # a start the SIGKILL cut short left a launcher waiting on its FIFO: the new agent removed it
    wait_for(lambda: agent.outside_processes() == [], what="no process outside the agent's cgroups")


def test_a_readopted_pod_keeps_its_conditions_and_its_saved_state_untouched(agent: AgentHarness) -> None:
    """The restart changes nothing about a running pod: not its conditions' transition times (the Initialized
    one was set again), so not its state file either (rewritten and fsynced once per pod, at every restart)."""
    agent.write("steady.yaml", SLEEPER % "steady")
    wait_for(lambda: is_running(agent, "steady") and container(agent, "steady")["ready"], what="ready")
    time.sleep(0.3)  # its last save done
    conditions = agent.pod("steady")["status"]["conditions"]
    uid = agent.pod("steady")["metadata"]["uid"]
    saved = next(agent.state.rglob(f"pods/{uid}/*.json"))
    inode = saved.stat().st_ino
    agent.stop(signal.SIGKILL)
    time.sleep(0.05)  # a transition set again would show as a later time
    agent.start()
    wait_for(lambda: is_running(agent, "steady"), what="adopted")
    time.sleep(0.3)
    assert agent.pod("steady")["status"]["conditions"] == conditions
    assert saved.stat().st_ino == inode


def test_the_api_never_lists_pods_being_restored_as_gone(agent: AgentHarness) -> None:
    """After a restart the API answers only once the pods are restored: its first list has them all, never an
    empty one that a kubectl user would read as "pods gone"."""
    names = [f"kept-{i}" for i in range(12)]
    for name in names:
        agent.write(f"{name}.yaml", SLEEPER % name)
    wait_for(lambda: all(is_running(agent, name) for name in names), timeout=30, what="running")
    agent.stop(signal.SIGKILL)
    agent.start(wait=False)
    counts: list[int] = []
    deadline = time.monotonic() + 20
    while len(counts) < 20 and time.monotonic() < deadline:
        try:
            counts.append(len(agent.pods()))
        except AgentUnavailableError:  # not listening yet (the old socket file may still be there)
            time.sleep(0.002)
    assert counts and set(counts) == {len(names)}, counts


def test_a_manifest_removed_while_the_agent_was_down_is_stopped_on_start(agent: AgentHarness) -> None:
    agent.write("leaving.yaml", SLEEPER % "leaving")
    wait_for(lambda: is_running(agent, "leaving"), what="running")
    pod_cgroup = agent.cgroup_path("leaving")
    pids = agent.procs(agent.cgroup_path("leaving", "c"))
    agent.stop(signal.SIGKILL)
    agent.remove("leaving.yaml")
    agent.start()
    # not just an empty list: the API may answer before the agent has restored its pods
    wait_for(lambda: not agent.pods() and not agent.cgroups.exists(pod_cgroup), timeout=15,
             what="the pod stopped and its cgroup removed")
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_an_exit_while_the_agent_was_down_keeps_its_exit_code(agent: AgentHarness) -> None:
    agent.write("brief.yaml", "kind: Pod\nmetadata: {name: brief}\nspec:\n  restartPolicy: Never\n"
                              "  containers: [{name: c, image: x, command: [sh, -c, 'sleep 1.5; echo bye; exit 3']}]\n")
    wait_for(lambda: is_running(agent, "brief"), what="running")
    # the state is written in a thread, shortly after the change the API shows: the start must be on disk (an
    # agent killed before that cannot know how the attempt ended: ContainerStatusUnknown, see catchup.py)
    uid = agent.pod("brief")["metadata"]["uid"]
    state_file = agent.state / "pods" / uid / "pod.json"
    wait_for(lambda: json.loads(state_file.read_text())["containers"]["c"]["running"], what="its start saved")
    agent.stop(signal.SIGKILL)
    time.sleep(2.5)  # it exits while nobody watches
    agent.start()
    ended = wait_for(lambda: container(agent, "brief")["state"].get("terminated"), what="terminated")
    assert (ended["exitCode"], ended["reason"]) == (3, "Error")
    assert agent.pod("brief")["status"]["phase"] == "Failed"
    assert agent.cli("logs", "brief").stdout == "bye\n"


def test_a_reused_pid_is_never_adopted(agent: AgentHarness) -> None:
    agent.write("victim.yaml", SLEEPER % "victim")
    wait_for(lambda: is_running(agent, "victim"), what="running")
    uid = agent.pod("victim")["metadata"]["uid"]
    state_file = agent.state / "pods" / uid / "pod.json"
    # the state is written in a thread, shortly after the change the API shows
    wait_for(lambda: json.loads(state_file.read_text())["containers"]["c"]["running"], what="its start saved")
    agent.stop(signal.SIGKILL)
    # The container and its conmon die while the agent is away, and their pids now name other processes.
    state = json.loads(state_file.read_text())
    running = state["containers"]["c"]["running"]
    for key in ("container", "conmon"):
        os.kill(running[key]["pid"], signal.SIGKILL)
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        running["conmon"]["pid"] = running["container"]["pid"] = stranger.pid  # same pid, other start time
        state_file.write_text(json.dumps(state))
        agent.start()
        restarted = wait_for(lambda: is_running(agent, "victim") and container(agent, "victim")["restartCount"] == 1
                             and container(agent, "victim"), what="a new start")
        assert stranger.poll() is None  # the unrelated process was neither adopted nor killed
        assert restarted["restartCount"] == 1
        assert restarted["lastState"]["terminated"]["reason"] in ("ContainerStatusUnknown", "Error")
        assert stranger.pid not in agent.procs(agent.cgroup_path("victim", "c"))
    finally:
        stranger.kill()
        stranger.wait()


def test_a_conmon_a_kill_left_in_the_agents_cgroup_is_moved_into_its_pod_once_taken_back(agent: AgentHarness) -> None:
    """The agent killed between conmon's start and its move into the pod's cgroup leaves conmon where the agent
    was (`KillMode=process` spares it): the agent that takes the container back moves it."""
    agent.write("steady.yaml", SLEEPER % "steady")
    wait_for(lambda: is_running(agent, "steady"), what="running")
    monitor = agent.cgroup_path("steady") + "/_conmon"
    conmon = wait_for(lambda: agent.procs(monitor), what="conmon in the pod's monitor cgroup")[0]
    agent.stop(signal.SIGKILL)
    into_the_cgroups_of(os.getpid(), conmon)  # where the agent, the test's child, started it
    assert conmon not in agent.procs(monitor)
    agent.start()
    wait_for(lambda: conmon in agent.procs(monitor), what="conmon moved into its pod's monitor cgroup")
    assert container(agent, "steady")["restartCount"] == 0


def into_the_cgroups_of(owner: int, pid: int) -> None:
    """Move `pid` into every cgroup `owner` is in (each v1 hierarchy, or the v2 one)."""
    layout = detect_layout()
    for line in Path(f"/proc/{owner}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            mount = layout.v2_mount
        elif controllers.startswith("name="):
            mount = f"/sys/fs/cgroup/{controllers.removeprefix('name=')}"
        else:
            mount = layout.v1_mounts[controllers.split(",")[0]]
        assert mount is not None
        Path(f"{mount}{path}/cgroup.procs").write_text(str(pid))


def test_a_clean_stop_leaves_pods_running(agent: AgentHarness) -> None:
    agent.write("steady.yaml", SLEEPER % "steady")
    wait_for(lambda: is_running(agent, "steady"), what="running")
    before = container(agent, "steady")
    path = agent.cgroup_path("steady", "c")
    # Running is said once the launcher runs: its steps (a shell, nsenter, unshare) end as it execs the command
    wait_for(lambda: _commands(agent.procs(path)) == ["sleep"], what="the command itself in the cgroup")
    pids = agent.procs(path)
    agent.stop(signal.SIGTERM)
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    agent.start()
    wait_for(lambda: is_running(agent, "steady"), what="adopted")
    assert container(agent, "steady")["containerID"] == before["containerID"]


def _commands(pids: list[int]) -> list[str]:
    """The processes' names; a process gone meanwhile as "" (the launcher's steps come and go)."""
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            names.append("")
    return names


# A container whose main process outlives an OOM kill in its cgroup: the whole container is OOMKilled for it
# (memory.oom.group on v2; on v1 the agent's OOM watch kills the rest).
SURVIVOR = ("kind: Pod\nmetadata: {name: survivor}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: x, "
            "resources: {limits: {memory: 64Mi}}, command: [sh, -c, 'while [ ! -e %s ]; do sleep 0.05; done; "
            "stress --vm 1 --vm-bytes 256M --vm-hang 0; exec sleep 3600']}]\n")


def oom_killed(agent: AgentHarness) -> dict[str, Any] | None:
    terminated = container(agent, "survivor")["state"].get("terminated")
    return terminated if terminated is not None and terminated["reason"] == "OOMKilled" else None


def test_an_oom_kill_while_the_agent_was_away_ends_the_container_it_takes_back(agent: AgentHarness) -> None:
    go = agent.root / "go"
    agent.write("survivor.yaml", SURVIVOR % go)
    wait_for(lambda: is_running(agent, "survivor"), what="running")
    path = agent.cgroup_path("survivor", "c")
    agent.stop(signal.SIGKILL)
    go.touch()
    wait_for(lambda: agent.cgroups.oom_kills(path) > 0, what="the OOM kill of stress's worker")
    if agent.cgroups.version == 1:  # no memory.oom.group: the shell lives on, with nobody watching
        assert agent.cgroups.procs(path)
    agent.start()
    terminated = wait_for(lambda: oom_killed(agent), what="OOMKilled once taken back")
    assert terminated["exitCode"] == 137


def test_an_oom_kill_after_a_restart_is_seen_by_the_watch_armed_at_ready(agent: AgentHarness) -> None:
    go = agent.root / "go"
    agent.write("survivor.yaml", SURVIVOR % go)
    wait_for(lambda: is_running(agent, "survivor"), what="running")
    agent.stop(signal.SIGKILL)
    agent.start()
    wait_for(lambda: agent.agent_log().count("nodeagent is running") == 2, what="READY again")
    go.touch()
    terminated = wait_for(lambda: oom_killed(agent), what="OOMKilled")
    assert terminated["exitCode"] == 137
