"""The agent with `runtime: cri` against a real containerd (tests/integration/containerd.py).

The agent runs in containerd's network namespace, so that it reaches the pods' CNI addresses; its
pods' cgroups live under the test's cgroupRoot, where containerd makes their containers' cgroups.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.mapping import OURS
from tests.conftest import EXAMPLES
from tests.integration.containerd import (
    BUSYBOX_IMAGE,
    Containerd,
    TestImages,
    containerd,
    cri_images,
    running_containerd,
)
from tests.integration.harness import NODE, AgentHarness, wait_for

__all__ = ["containerd", "cri_images"]  # the fixtures, imported for pytest

MiB = 1 << 20


def configure(harness: AgentHarness, containerd: Containerd) -> None:
    harness.use_netns(containerd.netns)
    harness.configure({"containerRuntimeEndpoint": containerd.endpoint, "nodeagent": {"runtime": "cri"}})


@pytest.fixture
def agent(harness: AgentHarness, containerd: Containerd) -> Iterator[AgentHarness]:
    configure(harness, containerd)
    harness.start()
    yield harness
    harness.stop()
    asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups


async def remove_sandboxes(containerd: Containerd) -> None:
    async with CRIClient(containerd.endpoint) as client:
        for sandbox in await client.list_pod_sandbox(labels=OURS):
            await client.stop_pod_sandbox(sandbox.id)
            await client.remove_pod_sandbox(sandbox.id)


def cri_containers(containerd: Containerd) -> list[cri.Container]:
    async def listed() -> list[cri.Container]:
        async with CRIClient(containerd.endpoint) as client:
            return await client.list_containers(labels=OURS)
    return asyncio.run(listed())


def example(name: str, **container: Any) -> str:
    """A docs example with the test's busybox image and the given container fields (memhog for stress)."""
    pod = yaml.safe_load((EXAMPLES / name).read_text())
    pod["spec"]["containers"][0].update(image=BUSYBOX_IMAGE, **container)
    return yaml.safe_dump(pod)


def pod(name: str, command: str, *, extra: str = "", container: str = "") -> str:
    return f"""
kind: Pod
metadata: {{name: {name}}}
spec:
{extra}  containers:
  - name: c
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, {command!r}]
{container}"""


def state(agent: AgentHarness, name: str, namespace: str = "default", container: str = "c") -> dict[str, Any]:
    return agent.container_status(name, container, namespace)


def running(agent: AgentHarness, name: str, namespace: str = "default", container: str = "c") -> bool:
    return "running" in state(agent, name, namespace, container)["state"]


def test_memory_demo_runs_under_its_limit_in_the_runtime_cgroup(agent: AgentHarness, containerd: Containerd) -> None:
    agent.write("memory-demo.yaml", example("memory-demo.yaml", command=["sh", "-c", "memhog 150; exec sleep 3600"],
                                            args=[]))
    wait_for(lambda: running(agent, "memory-demo", "mem-example", "memory-demo-ctr"), timeout=30, what="running")
    status = state(agent, "memory-demo", "mem-example", "memory-demo-ctr")
    cri_id = status["containerID"].removeprefix("containerd://")
    assert status["imageID"]
    pod_cgroup = agent.cgroup_path("memory-demo", None, "mem-example")
    limit_file = "memory.max" if agent.cgroups.version == 2 else "memory.limit_in_bytes"
    # containerd made the container's cgroup under the pod's, from the LinuxContainerResources it was given
    assert agent.kernel(f"{pod_cgroup}/{cri_id}", limit_file) == str(200 * MiB)
    assert agent.kernel(pod_cgroup, limit_file) == str(200 * MiB)
    assert agent.pod("memory-demo", "mem-example")["status"]["podIP"].startswith("10.88.")
    doctor = agent.doctor().stdout
    assert f"ok    cri: containerd at {containerd.endpoint}, cgroup driver cgroupfs on both sides" in doctor


def test_memory_demo_2_is_oom_killed_and_backs_off(agent: AgentHarness) -> None:
    agent.write("memory-demo-2.yaml", example("memory-demo-2.yaml", command=["memhog", "250"], args=[]))
    name, namespace, container = "memory-demo-2", "mem-example", "memory-demo-2-ctr"
    wait_for(lambda: state(agent, name, namespace, container)["restartCount"] >= 2, timeout=60, what="restarts")
    last = state(agent, name, namespace, container)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    wait_for(lambda: any(e["reason"] == "BackOff" for e in agent.events()), timeout=30, what="a BackOff event")


def test_init_containers_and_an_empty_dir(agent: AgentHarness) -> None:
    agent.write("init.yaml", pod("init", "cat /work/index.html; exec sleep 3600", extra=f"""\
  volumes: [{{name: workdir, emptyDir: {{}}}}]
  initContainers:
  - name: install
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, "echo hello from init > /work/index.html"]
    volumeMounts: [{{name: workdir, mountPath: /work}}]
""", container="    volumeMounts: [{name: workdir, mountPath: /work}]\n"))
    wait_for(lambda: running(agent, "init"), timeout=30, what="running")
    assert state(agent, "init", container="install")["state"]["terminated"]["reason"] == "Completed"
    wait_for(lambda: agent.cli("logs", "init").stdout == "hello from init\n", what="the app's log")


def test_a_stop_honours_the_grace_period(agent: AgentHarness) -> None:
    agent.write("stubborn.yaml", pod("stubborn", "trap '' TERM; while :; do sleep 0.1; done",
                                     extra="  terminationGracePeriodSeconds: 3\n"))
    wait_for(lambda: running(agent, "stubborn"), timeout=30, what="running")
    began = time.monotonic()
    agent.remove("stubborn.yaml")
    wait_for(lambda: not agent.pods(), timeout=20, what="stopped")
    assert 3 <= time.monotonic() - began < 10  # SIGTERM ignored: killed once the grace period is over


def test_a_missing_image_backs_off(agent: AgentHarness) -> None:
    agent.write("missing.yaml", pod("missing", "true").replace(BUSYBOX_IMAGE, "127.0.0.1:9/nope:1"))
    wait_for(lambda: state(agent, "missing")["state"].get("waiting", {}).get("reason") == "ImagePullBackOff",
             timeout=30, what="ImagePullBackOff")
    failed = [e["message"] for e in agent.events() if e["reason"] == "Failed"]
    assert any(m.startswith('Failed to pull image "127.0.0.1:9/nope:1": rpc error: code = ') and "connection refused"
               in m for m in failed), failed
    assert "Error: ErrImagePull" in failed
    assert any(e["reason"] == "Pulling" for e in agent.events())


def test_probes_and_hooks_through_the_runtime(agent: AgentHarness) -> None:
    agent.write("probed.yaml", pod("probed", "touch /tmp/ready; exec httpd -f -p 8080", container="""\
    readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}
    livenessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1, failureThreshold: 30}
"""))
    wait_for(lambda: state(agent, "probed")["ready"], timeout=30, what="ready through ExecSync")
    assert state(agent, "probed")["restartCount"] == 0


def test_the_agent_sigkilled_takes_its_containers_back(agent: AgentHarness, containerd: Containerd) -> None:
    agent.write("steady.yaml", pod("steady", "exec sleep 3600"))
    agent.write("brief.yaml", pod("brief", "sleep 2; exit 3", extra="  restartPolicy: Never\n"))
    wait_for(lambda: running(agent, "steady") and running(agent, "brief"), timeout=30, what="running")
    before = state(agent, "steady")
    agent.stop(signal.SIGKILL)
    time.sleep(2.5)  # brief exits while nobody watches
    agent.start()
    ended = wait_for(lambda: state(agent, "brief")["state"].get("terminated"), timeout=15, what="brief's end")
    assert ended["exitCode"] == 3
    wait_for(lambda: running(agent, "steady"), what="steady")
    after = state(agent, "steady")
    assert (after["containerID"], after["restartCount"]) == (before["containerID"], 0)
    # crictl's facts agree: one container per pod, the same IDs and attempts
    listed = {c.labels["io.kubernetes.pod.name"]: c for c in cri_containers(containerd)}
    assert listed[f"steady-{NODE}"].id == before["containerID"].removeprefix("containerd://")
    assert listed[f"steady-{NODE}"].metadata.attempt == 0
    assert listed[f"brief-{NODE}"].state == cri.CONTAINER_EXITED
    wide = agent.cli("get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "CONTAINERS"
    row = next(line.split() for line in wide if line.startswith(f"steady-{NODE}"))
    assert row[-1] == listed[f"steady-{NODE}"].id[:13]  # as `crictl ps` shows it


def test_containerd_restarted_under_a_running_agent(agent: AgentHarness, containerd: Containerd) -> None:
    agent.write("web.yaml", pod("web", "exec sleep 3600"))
    wait_for(lambda: running(agent, "web"), timeout=30, what="running")
    containerd.restart()
    assert running(agent, "web")
    cri_id = state(agent, "web")["containerID"].removeprefix("containerd://")
    [pid] = agent.procs(f"{agent.cgroup_path('web')}/{cri_id}")  # the container's cgroup, made by containerd
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: state(agent, "web")["restartCount"] == 1 and running(agent, "web"), timeout=30,
             what="a restart through the restarted containerd")


def test_a_cgroup_driver_mismatch_is_refused(harness: AgentHarness, cri_images: TestImages) -> None:
    with running_containerd(cri_images, systemd_cgroup=True) as systemd_containerd:
        configure(harness, systemd_containerd)
        with pytest.raises(AssertionError, match="the agent exited with 1"):
            harness.start()
        doctor = harness.doctor().stdout
        assert "fail  cri: cgroup driver mismatch: nodeagent uses cgroupfs but containerd" in doctor
        assert ("cgroup driver mismatch: nodeagent uses cgroupfs but containerd at "
                f"{systemd_containerd.endpoint} uses systemd") in harness.agent_log()


def finished(agent: AgentHarness, name: str) -> bool:
    return "terminated" in state(agent, name)["state"]


def test_seccomp_profile_and_host_aliases_through_cri(agent: AgentHarness) -> None:
    """RuntimeDefault reaches containerd as CRI's seccomp field (its own default profile: mode 2); no profile is
    sent as Unconfined, as the kubelet sends it; hostAliases reach the container's /etc/hosts."""
    agent.write("filtered.yaml", pod("filtered", "grep ^Seccomp: /proc/self/status; tail -n 1 /etc/hosts",
                                     extra="  restartPolicy: Never\n  securityContext: {seccompProfile: "
                                           "{type: RuntimeDefault}}\n"
                                           "  hostAliases: [{ip: 127.0.0.1, hostnames: [kubernetes]}]\n"))
    agent.write("open.yaml", pod("open", "grep ^Seccomp: /proc/self/status", extra="  restartPolicy: Never\n"))
    for name in ("filtered", "open"):
        wait_for(functools.partial(finished, agent, name), timeout=30, what=f"{name} done")
    assert agent.cli("logs", "filtered").stdout.split() == ["Seccomp:", "2", "127.0.0.1", "kubernetes"]
    assert agent.cli("logs", "open").stdout.split() == ["Seccomp:", "0"]


def test_host_pid_and_host_ipc_through_cri(agent: AgentHarness) -> None:
    agent.write("hostns.yaml", pod("hostns", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc",
                                   extra="  restartPolicy: Never\n  hostPID: true\n  hostIPC: true\n"))
    agent.write("ownns.yaml", pod("ownns", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc",
                                  extra="  restartPolicy: Never\n"))
    for name in ("hostns", "ownns"):
        wait_for(functools.partial(finished, agent, name), timeout=30, what=f"{name} done")
    node = [os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")]
    assert agent.cli("logs", "hostns").stdout.split() == node
    own = agent.cli("logs", "ownns").stdout.split()
    assert own[0] != node[0] and own[1] != node[1]


def test_safe_sysctls_through_cri(agent: AgentHarness) -> None:
    agent.write("sysctls.yaml", pod("sysctls", "cat /proc/sys/net/ipv4/ip_local_port_range",
                                    extra="  restartPolicy: Never\n  securityContext: {sysctls: "
                                          "[{name: net.ipv4.ip_local_port_range, value: 40000 41000}]}\n"))
    wait_for(lambda: "terminated" in state(agent, "sysctls")["state"], timeout=30, what="sysctls done")
    assert agent.cli("logs", "sysctls").stdout.split() == ["40000", "41000"]


def test_a_downward_api_volume_through_cri(agent: AgentHarness) -> None:
    agent.write("downward.yaml", pod("downward", "cat /info/name", extra="""\
  restartPolicy: Never
  volumes: [{name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}]
""", container="    volumeMounts: [{name: info, mountPath: /info}]\n"))
    wait_for(lambda: "terminated" in state(agent, "downward")["state"], timeout=30, what="downward done")
    assert agent.cli("logs", "downward").stdout == f"downward-{NODE}"
