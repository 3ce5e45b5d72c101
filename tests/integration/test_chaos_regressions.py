"""Deterministic regression tests for what the chaos suite (tests/chaos) found, one per fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format

from nodeagent.network.model import NETNS_DIR, netns_name
from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.mapping import CONTAINER_NAME, OURS
from tests.integration.containerd import BUSYBOX_IMAGE, TestImages, cri_images, running_containerd
from tests.integration.harness import AgentHarness, wait_for
from tests.integration.registry import Registry, auth_registry, registry
from tests.integration.test_cri import remove_sandboxes
from tests.integration.test_runc import Images, RuncAgent, images

__all__ = ["auth_registry", "cri_images", "images", "registry"]  # the fixtures, imported for pytest

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


def test_a_state_save_that_failed_for_lack_of_space_is_made_once_there_is_room(harness: AgentHarness) -> None:
    """Found by chaos (a full stateDir): a pod's state file that could not be written stayed stale until
    the pod's next change; a restart then took back an old attempt, lost the running one's record and the
    restart count went back."""
    harness.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "chaos-state", str(harness.state)], check=True)
    harness.start()
    harness.write("steady.yaml", SLEEPER % "steady")
    first = wait_for(lambda: running_id(harness, "steady"), what="running")
    filler = harness.state / "filler"
    try:
        with open(filler, "wb", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 4096)
    except OSError:
        pass
    harness.cgroups.kill(harness.cgroup_path("steady", "c"))  # its restart is a change the agent cannot save now
    second = wait_for(lambda: running_id(harness, "steady") not in (None, first) and running_id(harness, "steady"),
                      what="restarted")
    assert "No space left on device" in harness.agent_log()
    filler.unlink()  # room again (before, the test relied on what the restart happened to free)
    time.sleep(3)  # the agent saves what it could not
    harness.stop(signal.SIGKILL)
    harness.start()
    adopted = wait_for(lambda: running_id(harness, "steady"), what="running after the restart")
    status = harness.container_status("steady", "c")
    assert (adopted, status["restartCount"], status["lastState"]["terminated"]["containerID"]) == (second, 1, first)


def test_an_agent_started_while_containerd_is_down_waits_for_it(harness: AgentHarness,
                                                                 cri_images: TestImages) -> None:
    """Found by chaos (containerd stopped, the agent restarted meanwhile): the agent exited at start when the
    CRI runtime did not answer yet; it waits for it now, and a SIGTERM still ends it while it waits."""
    with running_containerd(cri_images) as containerd:
        harness.use_netns(containerd.netns)
        harness.configure({"containerRuntimeEndpoint": containerd.endpoint, "nodeagent": {"runtime": "cri"}})
        containerd.stop()
        back = threading.Timer(3, containerd.start)
        back.start()
        try:
            harness.start()  # waits up to 20 s for the API: the agent waits for containerd meanwhile
        finally:
            back.join()
        harness.write("box.yaml", f"kind: Pod\nmetadata: {{name: box}}\nspec:\n  containers: [{{name: c, image: "
                                  f"{BUSYBOX_IMAGE}, command: [sleep, '3600']}}]\n")
        wait_for(lambda: running_id(harness, "box"), timeout=30, what="running")
        assert "waiting for it" in harness.agent_log()
        harness.stop()
        containerd.stop()
        assert harness.process is None
        with open(harness.log_path, "ab") as log:
            waiting = subprocess.Popen([sys.executable, "-m", "nodeagent", "run", "--config", str(harness.config_path)],
                                       stdout=log, stderr=log)
        try:
            time.sleep(2)
            assert waiting.poll() is None, harness.agent_log()[-2000:]
            waiting.send_signal(signal.SIGTERM)
            assert waiting.wait(timeout=10) == 0
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        containerd.start()
        asyncio.run(remove_sandboxes(containerd))


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 4096)
    return filler


def test_a_start_that_fails_for_lack_of_space_is_reported_and_retried(harness: AgentHarness) -> None:
    """Found by chaos (a full stateDir, cri's RemoveContainer refused): an error of a start that was not a
    RuntimeStartError (here the process runtime's OSError writing the bundle) ended the pod's life task
    silently: the container stayed ContainerCreating for good, with no event and no retry."""
    harness.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "chaos-state", str(harness.state)], check=True)
    harness.start()
    filler = fill(harness.state)
    harness.write("later.yaml", SLEEPER.replace("spec:\n", "spec:\n  hostNetwork: true\n") % "later")
    failed = wait_for(lambda: [e for e in harness.events() if e["reason"] == "Failed"], what="a Failed event")
    assert "No space left on device" in failed[0]["message"]
    assert harness.container_status("later", "c")["state"]["waiting"]["reason"] == "CreateContainerError"
    filler.unlink()
    wait_for(lambda: running_id(harness, "later"), timeout=20, what="running once there is room")


async def start_orphan(endpoint: str, cri_id: str) -> str:
    """A second container like `cri_id`, in its sandbox, that the agent never heard of: what an agent killed
    between StartContainer and saving its state leaves behind (made from the runtime's own copies of the
    container's and the sandbox's configurations)."""
    async with CRIClient(endpoint) as client:
        status = await client.container_status(cri_id, verbose=True)
        config = json_format.ParseDict(json.loads(status.info["info"])["config"], cri.ContainerConfig(),
                                       ignore_unknown_fields=True)
        [container] = await client.list_containers(container_id=cri_id)
        sandbox = await client.pod_sandbox_status(container.pod_sandbox_id, verbose=True)
        sandbox_config = json_format.ParseDict(json.loads(sandbox.info["info"])["config"], cri.PodSandboxConfig(),
                                               ignore_unknown_fields=True)
        config.metadata.attempt = 99
        orphan = await client.create_container(container.pod_sandbox_id, config, sandbox_config)
        await client.start_container(orphan)
        return orphan


async def running_named(endpoint: str, name: str) -> list[str]:
    async with CRIClient(endpoint) as client:
        return [c.id for c in await client.list_containers(labels={CONTAINER_NAME: name, **OURS},
                                                           state=cri.CONTAINER_RUNNING)]


def test_a_cri_container_a_cut_short_start_left_running_is_removed_before_the_next_start(
        harness: AgentHarness, cri_images: TestImages) -> None:
    """Found by chaos (the agent SIGKILLed during a cri start): the container it had started was unknown to
    the next agent, which started another beside it at the next restart: two copies of one container."""
    with running_containerd(cri_images) as containerd:
        harness.use_netns(containerd.netns)
        harness.configure({"containerRuntimeEndpoint": containerd.endpoint, "nodeagent": {"runtime": "cri"}})
        harness.start()
        harness.write("box.yaml", f"kind: Pod\nmetadata: {{name: box}}\nspec:\n  containers: [{{name: c, image: "
                                  f"{BUSYBOX_IMAGE}, command: [sleep, '3600']}}]\n")
        first = wait_for(lambda: running_id(harness, "box"), timeout=30, what="running")
        cri_id = first.removeprefix("containerd://")
        orphan = asyncio.run(start_orphan(containerd.endpoint, cri_id))
        assert len(asyncio.run(running_named(containerd.endpoint, "c"))) == 2
        [pid] = harness.procs(f"{harness.cgroup_path('box')}/{cri_id}")
        os.kill(pid, signal.SIGKILL)  # the agent starts the container again
        wait_for(lambda: running_id(harness, "box") not in (None, first), timeout=30, what="restarted")
        now = running_id(harness, "box")
        assert now is not None
        assert asyncio.run(running_named(containerd.endpoint, "c")) == [now.removeprefix("containerd://")], orphan
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))


def test_a_liveness_probe_the_runtime_cannot_run_while_it_restarts_kills_nothing(
        harness: AgentHarness, cri_images: TestImages) -> None:
    """Found by chaos (containerd restarted): ExecSync failing with the runtime away ("server is not
    initialized yet") counted as a liveness failure and the agent killed a healthy container. The kubelet's
    prober throws such a result away; so does nodeagent now."""
    with running_containerd(cri_images) as containerd:
        harness.use_netns(containerd.netns)
        harness.configure({"containerRuntimeEndpoint": containerd.endpoint, "nodeagent": {"runtime": "cri"}})
        harness.start()
        harness.write("alive.yaml", f"kind: Pod\nmetadata: {{name: alive}}\nspec:\n  containers: [{{name: c, image: "
                                    f"{BUSYBOX_IMAGE}, command: [sleep, '3600'], livenessProbe: {{exec: {{command: "
                                    "['true']}, periodSeconds: 1, failureThreshold: 1}}]\n")
        first = wait_for(lambda: running_id(harness, "alive"), timeout=30, what="running")
        time.sleep(2)
        containerd.stop()
        time.sleep(3)
        containerd.start()
        time.sleep(3)
        assert running_id(harness, "alive") == first
        assert harness.container_status("alive", "c")["restartCount"] == 0
        assert not [e for e in harness.events() if e["reason"] in ("Unhealthy", "Killing")]
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))


STUBBORN = ("kind: Pod\nmetadata: {name: stubborn, annotations: {v: '%d'}}\nspec:\n  terminationGracePeriodSeconds: 20\n"
            "  containers: [{name: c, image: x, command: [sh, -c, \"trap '' TERM; exec sleep 3600\"]}]\n")


def test_versions_of_a_pod_restored_while_terminating_do_not_wait_for_each_other(agent: AgentHarness) -> None:
    """Found by chaos (a pod changed twice quickly, the agent restarted while the old versions terminated):
    each restored old version waited for the other to finish first, so neither finished and the newest
    version never started."""
    agent.write("stubborn.yaml", STUBBORN % 1)
    wait_for(lambda: running_id(agent, "stubborn"), what="running")
    agent.write("stubborn.yaml", STUBBORN % 2)  # v1 terminates (20 s: it ignores SIGTERM), v2 waits for it
    wait_for(lambda: len(agent.pods()) == 2, what="v2 waiting")
    agent.write("stubborn.yaml", STUBBORN % 3)  # v2 terminates before it started (it may be gone at once), v3 waits
    wait_for(lambda: any(p["metadata"]["annotations"]["v"] == "3" for p in agent.pods()), what="v3 waiting")
    # still terminating: a grace of 3 s, then 10 s, ran out first on a loaded machine
    assert any(p["metadata"]["annotations"]["v"] == "1" for p in agent.pods())
    agent.stop(signal.SIGKILL)
    agent.start()
    wait_for(lambda: len(agent.pods()) == 1 and running_id(agent, "stubborn"), timeout=45, what="v3 running alone")
    assert agent.pod("stubborn")["metadata"]["annotations"]["v"] == "3"


def test_a_pod_never_admitted_goes_when_its_manifest_does(agent: AgentHarness) -> None:
    """Found by chaos (a pod restored before its admission, then removed): a pod stopped while waiting for
    admission waited for it for ever, and stayed listed (and blocked a new version of itself)."""
    agent.write("huge.yaml", "kind: Pod\nmetadata: {name: huge}\nspec:\n  containers: [{name: c, image: x, command: "
                             "[sleep, '3600'], resources: {requests: {memory: 100Ti}}}]\n")
    wait_for(lambda: agent.pod("huge")["status"]["phase"] == "Pending" and
             any(e["reason"] == "OutOfmemory" for e in agent.events()), what="not admitted")
    agent.remove("huge.yaml")
    wait_for(lambda: not agent.pods(), timeout=10, what="the pod gone")


def test_the_agent_starts_with_its_state_directory_full(harness: AgentHarness) -> None:
    """Found by chaos (the agent restarted while stateDir was full): the process runtime rewrote its OCI
    runtime script into stateDir at every start, and the agent died with ENOSPC instead of taking its
    pods back."""
    harness.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "chaos-state", str(harness.state)], check=True)
    harness.start()
    harness.write("steady.yaml", SLEEPER % "steady")
    before = wait_for(lambda: running_id(harness, "steady"), what="running")
    harness.stop(signal.SIGKILL)
    fill(harness.state)
    harness.start()
    assert wait_for(lambda: running_id(harness, "steady"), what="taken back") == before  # the API may answer first


def test_the_agent_lives_when_the_orphan_clean_up_cannot_save_the_leases(harness: AgentHarness) -> None:
    """Found by chaos (process, seed 14: the agent restarted while stateDir was full): releasing the address
    of a pod the agent no longer knew could not be saved (ENOSPC), and the OSError ended the agent. Here
    a read-only <stateDir>/network refuses the save (a full tmpfs frees room as the agent cleans up)."""
    harness.start()
    harness.write("lost.yaml", SLEEPER % "lost")
    wait_for(lambda: running_id(harness, "lost"), what="running")
    uid = harness.pod("lost")["metadata"]["uid"]
    harness.stop(signal.SIGKILL)
    harness.remove("lost.yaml")
    shutil.rmtree(harness.state / "pods" / uid)  # its state gone: its lease belongs to no known pod
    network = str(harness.state / "network")
    subprocess.run(["mount", "--bind", network, network], check=True)  # unmounted by the harness
    subprocess.run(["mount", "-o", "remount,bind,ro", network, network], check=True)
    harness.start()
    assert harness.process is not None
    wait_for(lambda: harness.process is None or harness.process.poll() is not None
             or "removing the networks of pods that are gone" in harness.agent_log(), what="the clean-up")
    assert harness.process.poll() is None, harness.agent_log()[-2000:]
    assert "Read-only file system" in harness.agent_log()


def lose_a_save(agent: AgentHarness, container: str, while_down: Callable[[str], None] = lambda cgroup: None,
                cgroup_of: Callable[[str], str] | None = None) -> tuple[str, str]:
    """A pod's container restarted (attempt 1) after its state was last saved (attempt 0 running), then the
    agent SIGKILLed and started again on that state file, as when the saves that followed could not be written
    (the stateDir full), after `while_down` (given attempt 1's cgroup; `cgroup_of` an attempt's container ID:
    the container's cgroup unless given): the two attempts' container IDs."""
    agent.write("steady.yaml", f"kind: Pod\nmetadata: {{name: steady}}\nspec:\n  containers: [{container}]\n")
    first = wait_for(lambda: running_id(agent, "steady"), timeout=30, what="running")
    state_file = agent.state / "pods" / agent.pod("steady")["metadata"]["uid"] / "pod.json"
    # the API says running before the save does (a loaded CI read the state of attempt 0 being created)
    wait_for(lambda: first.rsplit("/", 1)[-1] in state_file.read_text(), what="attempt 0 saved running")
    stale, saved_at = state_file.read_bytes(), state_file.stat().st_mtime_ns
    cgroup_of = cgroup_of or (lambda _: agent.cgroup_path("steady", "c"))
    agent.cgroups.kill(cgroup_of(first))
    second = wait_for(lambda: running_id(agent, "steady") not in (None, first) and running_id(agent, "steady"),
                      timeout=30, what="restarted")
    cgroup = cgroup_of(second)
    agent.stop(signal.SIGKILL)
    state_file.write_bytes(stale)
    os.utime(state_file, ns=(saved_at, saved_at))
    while_down(cgroup)
    agent.start()
    return first, second


def assert_taken_back(agent: AgentHarness, first: str, second: str) -> None:
    """The running attempt 1 taken back with its count from the first answer on, attempt 0's end unknown."""
    assert wait_for(lambda: agent.container_status("steady", "c"), what="restored")["restartCount"] == 1
    wait_for(lambda: running_id(agent, "steady"), what="running after the restart")
    time.sleep(1)  # a wrong agent would start attempt 1 again about now
    status = agent.container_status("steady", "c")
    assert (status["containerID"], status["restartCount"]) == (second, 1)
    assert status["lastState"]["terminated"]["containerID"] == first
    assert status["lastState"]["terminated"]["reason"] == "ContainerStatusUnknown"


def test_a_restart_whose_save_was_lost_is_learnt_from_the_disk(agent: AgentHarness) -> None:
    """Found by chaos (runc, seed 11: the stateDir full, then the agent SIGKILLed): the state file still said
    attempt 0 ran; the restart took back that ended attempt, showed restart count 0 after 1, and killed the
    running attempt 1 to start it again. Its log file (1.log) and its conmon prove it began: it is taken back,
    with its count, and the attempt before it ended unrecorded (ContainerStatusUnknown)."""
    first, second = lose_a_save(agent, "{name: c, image: x, command: [sleep, '3600']}")
    assert_taken_back(agent, first, second)


def test_a_runc_restart_whose_save_was_lost_is_learnt_from_the_disk(
        agent_root: Path, registry: Registry, auth_registry: Registry, images: Images) -> None:
    """The same with runc, as the soak found it (runc says which containers run: `runc state`)."""
    runc = RuncAgent(agent_root, [registry, auth_registry])
    try:
        runc.harness.start()
        first, second = lose_a_save(runc.harness, f"{{name: c, image: '{images.busybox.reference}', "
                                                  "command: [sleep, '3600']}")
        assert_taken_back(runc.harness, first, second)
    finally:
        runc.clean_up()


def catches_term(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # a `sleep 0.1` that ended
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def exit_3_while_down(agent: AgentHarness, cgroup: str) -> None:
    """Attempt 1 (a shell that exits 3 on SIGTERM) ends while the agent is down, once its trap is set."""
    wait_for(lambda: any(catches_term(pid) for pid in agent.procs(cgroup)), what="the shell's trap set")
    for pid in agent.procs(cgroup):
        with contextlib.suppress(ProcessLookupError):  # a `sleep 0.1` of the loop may end first
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not agent.procs(cgroup), what="attempt 1 ended")


def assert_end_kept(agent: AgentHarness, second: str) -> None:
    """Attempt 1's end as the runtime recorded it (exit code 3), not ContainerStatusUnknown, and it restarts."""
    status = wait_for(lambda: (s := agent.container_status("steady", "c"))["restartCount"] == 2 and s,
                      timeout=30, what="attempt 2 (after the crash-loop back-off)")
    ended = status["lastState"]["terminated"]
    assert (ended["containerID"], ended["exitCode"], ended["reason"]) == (second, 3, "Error")


TRAPS_TERM = "{name: c, image: %s, command: [sh, -c, \"trap 'exit 3' TERM; while :; do sleep 0.1; done\"]}"


def test_an_attempt_that_ended_after_a_lost_save_keeps_its_exit_code(agent: AgentHarness) -> None:
    """An agent killed before it saved a start (its state file is written a few ms after) knew that attempt
    only by its log file: if it ended while the agent was down, its end showed as ContainerStatusUnknown (137).
    conmon's exit file, found by the log path the bundle keeps, says how it ended."""
    _, second = lose_a_save(agent, TRAPS_TERM % "x", while_down=lambda cgroup: exit_3_while_down(agent, cgroup))
    assert_end_kept(agent, second)


def test_a_runc_attempt_that_ended_after_a_lost_save_keeps_its_exit_code(
        agent_root: Path, registry: Registry, auth_registry: Registry, images: Images) -> None:
    runc = RuncAgent(agent_root, [registry, auth_registry])
    try:
        runc.harness.start()
        _, second = lose_a_save(runc.harness, TRAPS_TERM % f"'{images.busybox.reference}'",
                                while_down=lambda cgroup: exit_3_while_down(runc.harness, cgroup))
        assert_end_kept(runc.harness, second)
    finally:
        runc.clean_up()


def test_a_cri_attempt_that_ended_after_a_lost_save_keeps_its_exit_code(harness: AgentHarness,
                                                                          cri_images: TestImages) -> None:
    """The same with containerd, which keeps an exited container with its exit code until it is removed."""
    with running_containerd(cri_images) as containerd:
        harness.use_netns(containerd.netns)
        harness.configure({"containerRuntimeEndpoint": containerd.endpoint, "nodeagent": {"runtime": "cri"}})
        harness.start()
        _, second = lose_a_save(
            harness, TRAPS_TERM % BUSYBOX_IMAGE, while_down=lambda cgroup: exit_3_while_down(harness, cgroup),
            cgroup_of=lambda container_id: f"{harness.cgroup_path('steady')}/{container_id.removeprefix('containerd://')}")
        assert_end_kept(harness, second)
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))


def test_the_harness_removes_the_pod_networks_of_a_tmpfs_state_directory(agent_root: Path) -> None:
    """Each full test run left ~2 empty `nodeagent-<key>` network namespaces: the tests above that mount a tmpfs
    on stateDir end with a pod running, and the harness unmounted the tmpfs, leases and all, before it removed
    the pod networks those leases name."""
    harness = AgentHarness(agent_root)
    try:
        harness.state.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "chaos-state", str(harness.state)], check=True)
        harness.start()
        harness.write("steady.yaml", SLEEPER % "steady")
        wait_for(lambda: running_id(harness, "steady"), what="running")
        netns = Path(NETNS_DIR) / netns_name(harness.pod("steady")["metadata"]["uid"])
        assert netns.exists()
    finally:
        harness.clean_up()
    assert not netns.exists()


def test_a_start_that_failed_before_the_last_save_counts_no_attempt(
        agent_root: Path, registry: Registry, auth_registry: Registry, images: Images) -> None:
    """A runc start refused by `runc create` leaves the log file conmon opened, with no attempt begun: older
    than the state saved after the failure, it proves nothing after an agent restart."""
    runc = RuncAgent(agent_root, [registry, auth_registry])
    agent = runc.harness
    try:
        agent.start()
        agent.write("nope.yaml", f"kind: Pod\nmetadata: {{name: nope}}\nspec:\n  containers: [{{name: c, image: "
                                 f"'{images.busybox.reference}', command: [no-such-command]}}]\n")
        wait_for(lambda: agent.container_status("nope", "c")["state"].get("waiting", {}).get("reason") ==
                 "RunContainerError", timeout=30, what="the start refused")
        assert list(agent.root.glob("**/*nope*/c/0.log"))  # what misled the restart
        time.sleep(0.5)  # saved
        agent.stop(signal.SIGKILL)
        agent.start()
        status = wait_for(lambda: agent.container_status("nope", "c"), what="restored")
        assert (status["restartCount"], status["state"]["waiting"]["reason"]) == (0, "RunContainerError")
        assert "began after its last saved state" not in agent.agent_log()
    finally:
        runc.clean_up()
