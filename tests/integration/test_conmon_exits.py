"""conmon's exit files (<stateDir>/exits): each one read by the agent, none left once its container is gone.
A chaos soak left 21 of them after every pod was removed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from nodeagent.errors import RuntimeStartError
from nodeagent.images.store import ImageStore
from nodeagent.plan.pod import CgroupPlan
from nodeagent.runtime.process import ProcessRuntime
from nodeagent.runtime.runc import RuncRuntime
from tests.chaos.faults import monitors
from tests.integration.harness import AgentHarness, cgroup_driver, wait_for
from tests.integration.registry import Registry, auth_registry, registry  # noqa: F401
from tests.integration.test_runc import Images, RuncAgent, images, runc_list  # noqa: F401
from tests.unit.test_security import SPEC

SLEEPER = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"


def exits(harness: AgentHarness) -> list[str]:
    directory = harness.state / "exits"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def orphan_exit_files(harness: AgentHarness) -> list[str]:
    """Exit files as a crash or an older agent leaves them: their containers' bundles are gone."""
    names = [secrets.token_hex(32), f"{secrets.token_hex(32)}.X1Y2Z3"]  # a conmon killed mid-write: its temp
    (harness.state / "exits").mkdir(parents=True, exist_ok=True)
    for name in names:
        (harness.state / "exits" / name).write_text("0")
    return names


def test_exit_files_no_container_owns_are_swept_at_start_and_after_a_pods_teardown(harness: AgentHarness) -> None:
    left = orphan_exit_files(harness)
    harness.start()
    wait_for(lambda: not set(left) & set(exits(harness)), what="the exit files of no container swept at start")
    harness.write("steady.yaml", SLEEPER % "steady")
    wait_for(lambda: "running" in harness.container_status("steady", "c")["state"], what="running")
    left = orphan_exit_files(harness)
    harness.remove("steady.yaml")
    wait_for(lambda: not harness.pods(), what="the pod gone")
    wait_for(lambda: exits(harness) == [], what="every exit file swept after the teardown")
    assert set(left).isdisjoint(exits(harness))


@pytest.mark.timeout(60)
async def test_a_start_cut_short_before_its_watch_waits_for_conmon_and_leaves_no_exit_file(
        agent_root: Path) -> None:
    """The start's cgroup is gone by the time its process is moved into it (as when something removes it
    from outside): the start fails, conmon has ended by then, and its exit file is gone with it."""
    state = agent_root / "state"
    runtime = ProcessRuntime(cgroup_driver(), str(state), None)
    spec = dataclasses.replace(SPEC, command=("sleep", "60"), log_path=str(agent_root / "logs" / "c" / "0.log"),
                               cgroup=CgroupPlan("container", f"/nodeagent-gone-{secrets.token_hex(4)}"))
    try:
        with pytest.raises(RuntimeStartError):
            await runtime.start(spec)
        assert monitors(str(state)) == []
        await asyncio.sleep(0.5)  # a conmon that outlived the start would write its exit file about now
        assert os.listdir(state / "exits") == []
        assert os.listdir(state / "containers") == []
    finally:
        for pid in monitors(str(state)):
            os.kill(pid, 9)


def stop_before_taken_back(harness: AgentHarness, container: str) -> None:
    """A running pod, restored after an agent restart and stopped before its set-up was done (its hostPath
    directory is gone: the set-up fails until the pod is stopped), so it never takes its container back before
    its stop (a runc container's sleep, its PID 1, ignores SIGTERM: SIGKILL after the 3 s grace period)."""
    volume = harness.root / "volume"
    volume.mkdir()
    harness.start()
    harness.write("gone.yaml", "kind: Pod\nmetadata: {name: gone}\nspec:\n  terminationGracePeriodSeconds: 3\n"
                  f"  volumes: [{{name: v, hostPath: {{path: {volume}, type: Directory}}}}]\n"
                  f"  containers: [{container}]\n")
    wait_for(lambda: "running" in harness.container_status("gone", "c")["state"], what="running")
    harness.stop(signal.SIGKILL)
    volume.rmdir()
    harness.start()
    wait_for(lambda: any(e["reason"] == "FailedMount" for e in harness.events()), what="its set-up failing")
    harness.remove("gone.yaml")
    wait_for(lambda: not harness.pods(), what="the pod gone")


def test_a_pod_stopped_before_it_took_its_containers_back_leaves_no_container_files(harness: AgentHarness) -> None:
    """Found by chaos (runc, seed 7): the teardown of such a pod killed its containers with its cgroups, but
    nobody removed what they left: the bundle, conmon's exit file and socket."""
    stop_before_taken_back(harness, "{name: c, image: x, command: [sleep, '3600']}")
    assert os.listdir(harness.state / "containers") == []
    assert exits(harness) == []
    assert not (harness.state / "sockets").exists() or os.listdir(harness.state / "sockets") == []
    assert monitors(str(harness.state)) == []


def test_a_runc_pod_stopped_before_it_took_its_containers_back_leaves_nothing(
        agent_root: Path, registry: Registry, auth_registry: Registry, images: Images) -> None:  # noqa: F811
    """With runc, the container itself, its rootfs mount and its image lease stayed too."""
    agent = RuncAgent(agent_root, [registry, auth_registry])
    harness = agent.harness
    try:
        stop_before_taken_back(harness, f"{{name: c, image: '{images.busybox.reference}', command: [sleep, '3600']}}")
        assert (os.listdir(harness.state / "containers"), exits(harness), runc_list(harness)) == ([], [], [])
        assert os.listdir(harness.state / "rootfs") == []
        assert [line for line in Path("/proc/self/mounts").read_text().splitlines()
                if str(harness.state / "rootfs") in line] == []
        assert list((harness.state / "images" / "leases").glob("*.json")) == []
    finally:
        agent.clean_up()


def test_a_pod_stopped_before_it_took_its_containers_back_stops_them_gracefully(harness: AgentHarness) -> None:
    """Such a pod's containers were SIGKILLed with its cgroups: no stop signal, no grace period. They get the
    stop any container of a terminating pod gets: its stop signal, SIGKILL only after the grace period."""
    marker = harness.root / "marker"
    marker.mkdir()
    trap = f"trap 'echo stopped > {marker}/term; exit 0' TERM; while :; do sleep 0.1; done"
    stop_before_taken_back(harness, f'{{name: c, image: x, command: [sh, -c, "{trap}"]}}')
    assert (marker / "term").read_text() == "stopped\n"
    assert "stopped before it was taken back" not in harness.agent_log()


@pytest.mark.timeout(90)
async def test_a_runc_start_cancelled_while_conmon_starts_leaves_no_conmon(
        agent_root: Path, registry: Registry, images: Images) -> None:  # noqa: F811
    """The start cancelled (the agent SIGTERMed, the pod removed) while conmon waits for `runc create` (made
    slow here): conmon lived on until the next start's sweep. The cancelled start ends it, and leaves nothing."""
    state = agent_root / "state"
    slow = agent_root / "slow-runc"
    slow.write_text("#!/bin/sh\nfor arg; do [ \"$arg\" = create ] && sleep 3; done\nexec runc \"$@\"\n")
    slow.chmod(0o755)
    cgroups = cgroup_driver()
    root = f"/nodeagent-test-{secrets.token_hex(4)}"
    async with ImageStore(str(state / "images"), insecure_registries=[registry.host]) as store:
        runtime = RuncRuntime(cgroups, str(state), store, runc_path=str(slow))
        spec = dataclasses.replace(SPEC, image=images.busybox.reference, command=("sleep", "60"),
                                   log_path=str(agent_root / "logs" / "c" / "0.log"),
                                   cgroup=CgroupPlan("container", f"{root}/c"))
        await runtime.ensure_image(spec, lambda: None)
        start = asyncio.create_task(runtime.start(spec))
        try:
            for _ in range(200):
                if monitors(str(state)) or start.done():
                    break
                await asyncio.sleep(0.01)
            assert monitors(str(state)), "conmon did not start"
            start.cancel()
            with pytest.raises(asyncio.CancelledError):
                await start
            assert monitors(str(state)) == []
            await asyncio.sleep(3.5)  # what a conmon left behind would make of the slow create by now
            assert monitors(str(state)) == []
            assert subprocess.run(["runc", "--root", str(state / "runc"), "list", "-q"], capture_output=True,
                                  text=True, check=True).stdout.split() == []
            assert (os.listdir(state / "containers"), os.listdir(state / "exits")) == ([], [])
            assert os.listdir(state / "rootfs") == []
        finally:
            for pid in monitors(str(state)):
                os.kill(pid, signal.SIGKILL)
            if (state / "runc").is_dir():
                subprocess.run(["runc", "--root", str(state / "runc"), "delete", "--force",
                                *os.listdir(state / "runc")], capture_output=True, check=False)
            for line in Path("/proc/self/mounts").read_text().splitlines():
                if str(agent_root) in line.split()[1]:
                    subprocess.run(["umount", "-l", line.split()[1]], check=False)
            cgroups._remove_all([root])
