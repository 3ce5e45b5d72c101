"""The CRI client against a real containerd 1.6 (tests/integration/containerd.py), sandboxes to images."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from nodeagent.cgroups.detect import detect_layout
from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.cgroupdriver import query_cgroup_driver, runtime_cgroup_driver
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.errors import CRIError, CRIUnavailableError
from tests.integration.containerd import BUSYBOX_IMAGE, POD_SUBNET, Containerd, containerd, cri_images

__all__ = ["containerd", "cri_images"]  # the fixtures, imported for pytest

T = TypeVar("T")
MiB = 1024 * 1024
LABEL = "nodeagent.test/case"
CRI_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$")
latencies: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def report_latencies(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module, the median latency of each timed call (printed past pytest's capture)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and latencies:
        with capture.global_and_fixture_disabled():
            print("\nCRI call latencies against containerd (median, ms): " + ", ".join(
                f"{name} {sorted(values)[len(values) // 2]:.1f}" for name, values in sorted(latencies.items())))


@pytest.fixture
async def client(containerd: Containerd) -> AsyncIterator[CRIClient]:
    async with CRIClient(containerd.endpoint) as created:
        yield created


async def timed(name: str, call: Awaitable[T]) -> T:
    started = time.monotonic()
    result = await call
    latencies.setdefault(name, []).append((time.monotonic() - started) * 1000)
    return result


def sandbox_config(containerd: Containerd, name: str, *, labels: dict[str, str] | None = None,
                   host_network: bool = True) -> cri.PodSandboxConfig:
    uid = secrets.token_hex(16)
    log_directory = containerd.base / "pods" / f"default_{name}_{uid}"
    network = cri.NODE if host_network else cri.POD
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname="" if host_network else name,
        log_directory=str(log_directory),
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.uid": uid, **(labels or {})},
        annotations={"kubernetes.io/config.source": "file"},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=containerd.cgroup_parent(f"pod{uid}"),
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(network=network, pid=cri.CONTAINER, ipc=cri.POD)),
        ),
    )


def container_config(name: str, command: list[str], *, memory_bytes: int = 0,
                     oom_score_adj: int = 0) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=0),
        image=cri.ImageSpec(image=BUSYBOX_IMAGE),
        command=command,
        envs=[cri.KeyValue(key="GREETING", value="hi")],
        labels={"io.kubernetes.container.name": name},
        log_path=f"{name}/0.log",
        linux=cri.LinuxContainerConfig(
            resources=cri.LinuxContainerResources(
                cpu_period=100_000, cpu_quota=50_000, cpu_shares=512, memory_limit_in_bytes=memory_bytes,
                memory_swap_limit_in_bytes=memory_bytes, oom_score_adj=oom_score_adj),
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=cri.NamespaceOption(network=cri.NODE, pid=cri.CONTAINER, ipc=cri.POD)),
        ),
    )


def memory_cgroup(cgroup_path: str) -> tuple[Path, str]:
    """The memory cgroup directory of a cgroupfs path, and its limit file."""
    layout = detect_layout()
    if layout.version == 2:
        assert layout.v2_mount is not None
        return Path(layout.v2_mount + cgroup_path), "memory.max"
    return Path(layout.v1_mounts["memory"] + cgroup_path), "memory.limit_in_bytes"


async def wait_exited(client: CRIClient, container_id: str, *, timeout_s: float = 20) -> cri.ContainerStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await client.container_status(container_id)).status
        if status.state == cri.CONTAINER_EXITED:
            return status
        assert time.monotonic() < deadline, f"container {container_id} still {status.state} after {timeout_s}s"
        await asyncio.sleep(0.05)


async def remove_sandbox(client: CRIClient, sandbox_id: str) -> None:
    await timed("StopPodSandbox", client.stop_pod_sandbox(sandbox_id))
    await timed("RemovePodSandbox", client.remove_pod_sandbox(sandbox_id))


async def test_version_and_status(client: CRIClient) -> None:
    version = await timed("Version", client.version())
    assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
    assert version.runtime_version.startswith("1.6")
    status = await timed("Status", client.status())
    conditions = {c.type: c.status for c in status.status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert not status.info  # only with verbose


async def test_cgroup_driver_from_status(client: CRIClient) -> None:
    status = await client.status(verbose=True)
    assert json.loads(status.info["config"])["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert runtime_cgroup_driver(status) == "cgroupfs"
    with pytest.raises(CRIError) as raised:
        await client.runtime_config()  # containerd 2.0 added it
    assert raised.value.code == "UNIMPLEMENTED"
    assert await query_cgroup_driver(client) == "cgroupfs"


async def test_sandbox_and_container_lifecycle(containerd: Containerd, client: CRIClient) -> None:
    config = sandbox_config(containerd, "lifecycle")
    sandbox_id = await timed("RunPodSandbox", client.run_pod_sandbox(config))
    try:
        sandbox = (await timed("PodSandboxStatus", client.pod_sandbox_status(sandbox_id))).status
        assert sandbox.state == cri.SANDBOX_READY
        assert sandbox.metadata.uid == config.metadata.uid
        assert sandbox.linux.namespaces.options.network == cri.NODE

        spec = container_config("hello", ["sh", "-c", "echo $GREETING; echo oops >&2; sleep 2"],
                                memory_bytes=64 * MiB, oom_score_adj=500)
        container_id = await timed("CreateContainer", client.create_container(sandbox_id, spec, config))
        created = (await client.container_status(container_id)).status
        assert created.state == cri.CONTAINER_CREATED

        await timed("StartContainer", client.start_container(container_id))
        cgroup, limit_file = memory_cgroup(f"{config.linux.cgroup_parent}/{container_id}")
        assert (cgroup / limit_file).read_text().strip() == str(64 * MiB)
        running = await timed("ContainerStatus", client.container_status(container_id, verbose=True))
        assert running.status.state == cri.CONTAINER_RUNNING
        assert running.status.started_at >= running.status.created_at > 0
        pid = json.loads(running.info["info"])["pid"]
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "500"
        assert f"{config.linux.cgroup_parent}/{container_id}" in Path(f"/proc/{pid}/cgroup").read_text()
        listed = await timed("ListContainers", client.list_containers(sandbox_id=sandbox_id))
        assert [c.id for c in listed] == [container_id]
        assert listed[0].metadata.name == "hello" and listed[0].labels["io.kubernetes.container.name"] == "hello"
        executed = await timed("ExecSync", client.exec_sync(container_id, ["sh", "-c", "echo $GREETING; exit 4"],
                                                            timeout_s=5))
        assert (executed.exit_code, executed.stdout) == (4, b"hi\n")

        exited = await wait_exited(client, container_id)
        assert (exited.exit_code, exited.reason) == (0, "Completed")
        assert exited.finished_at - exited.started_at >= 2_000_000_000
        assert exited.log_path == f"{config.log_directory}/hello/0.log"
        lines = [CRI_LOG_LINE.match(line) for line in Path(exited.log_path).read_text().splitlines()]
        assert all(lines), lines
        assert sorted((m[2], m[3], m[4]) for m in lines if m) == [("stderr", "F", "oops"), ("stdout", "F", "hi")]

        failing = container_config("failing", ["sh", "-c", "exit 3"])
        failing_id = await client.create_container(sandbox_id, failing, config)
        await client.start_container(failing_id)
        failed = await wait_exited(client, failing_id)
        assert (failed.exit_code, failed.reason) == (3, "Error")

        await timed("StopContainer", client.stop_container(container_id, timeout_s=2))
        await timed("RemoveContainer", client.remove_container(container_id))
        with pytest.raises(CRIError) as raised:
            await client.container_status(container_id)
        assert raised.value.not_found
    finally:
        await remove_sandbox(client, sandbox_id)
    assert await client.list_pod_sandbox(sandbox_id=sandbox_id) == []
    assert not cgroup.exists()


async def test_oom_killed_container(containerd: Containerd, client: CRIClient) -> None:
    config = sandbox_config(containerd, "oom")
    sandbox_id = await client.run_pod_sandbox(config)
    try:
        spec = container_config("hog", ["memhog", "512"], memory_bytes=32 * MiB)
        container_id = await client.create_container(sandbox_id, spec, config)
        await client.start_container(container_id)
        exited = await wait_exited(client, container_id)
        assert (exited.exit_code, exited.reason) == (137, "OOMKilled")
    finally:
        await remove_sandbox(client, sandbox_id)


async def test_stop_container_kills_after_the_grace_period(containerd: Containerd, client: CRIClient) -> None:
    config = sandbox_config(containerd, "grace")
    sandbox_id = await client.run_pod_sandbox(config)
    try:
        spec = container_config("stubborn", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
        container_id = await client.create_container(sandbox_id, spec, config)
        await client.start_container(container_id)
        started = time.monotonic()
        await client.stop_container(container_id, timeout_s=1)
        assert 0.9 < time.monotonic() - started < 5
        stopped = (await client.container_status(container_id)).status
        assert (stopped.state, stopped.exit_code) == (cri.CONTAINER_EXITED, 137)
    finally:
        await remove_sandbox(client, sandbox_id)


async def test_list_pod_sandbox_by_labels_and_state(containerd: Containerd, client: CRIClient) -> None:
    case = secrets.token_hex(4)
    configs = [sandbox_config(containerd, f"list-{n}", labels={LABEL: case, "n": str(n)}) for n in range(2)]
    sandbox_ids = [await client.run_pod_sandbox(config) for config in configs]
    try:
        assert {s.id for s in await client.list_pod_sandbox(labels={LABEL: case})} == set(sandbox_ids)
        one = await timed("ListPodSandbox", client.list_pod_sandbox(labels={LABEL: case, "n": "1"}))
        assert [(s.id, s.metadata.name) for s in one] == [(sandbox_ids[1], "list-1")]
        await client.stop_pod_sandbox(sandbox_ids[0])
        ready = await client.list_pod_sandbox(labels={LABEL: case}, state=cri.SANDBOX_READY)
        assert [s.id for s in ready] == [sandbox_ids[1]]
        assert await client.list_pod_sandbox(labels={LABEL: "nobody"}) == []
    finally:
        for sandbox_id in sandbox_ids:
            await remove_sandbox(client, sandbox_id)


async def test_pod_network_from_cni_inside_the_test_namespace(containerd: Containerd, client: CRIClient) -> None:
    config = sandbox_config(containerd, "net", host_network=False)
    sandbox_id = await timed("RunPodSandbox (CNI bridge)", client.run_pod_sandbox(config))
    try:
        status = (await client.pod_sandbox_status(sandbox_id)).status
        assert ipaddress.ip_address(status.network.ip) in ipaddress.ip_network(POD_SUBNET)
        assert "natest0" in containerd.in_namespaces("ip", "-br", "link")
    finally:
        await remove_sandbox(client, sandbox_id)


async def test_images(client: CRIClient) -> None:
    image = await timed("ImageStatus", client.image_status(BUSYBOX_IMAGE))
    assert image is not None and BUSYBOX_IMAGE in image.repo_tags and image.size > 0
    assert await client.image_status("nodeagent.test/missing:1") is None
    assert BUSYBOX_IMAGE in {tag for i in await client.list_images() for tag in i.repo_tags}
    # containerd's network namespace has only lo: nothing listens on 127.0.0.1:9 there.
    with pytest.raises(CRIError) as raised:
        await client.pull_image("127.0.0.1:9/nodeagent/missing:1")
    assert raised.value.code == "UNKNOWN"
    assert 'failed to pull and unpack image "127.0.0.1:9/nodeagent/missing:1"' in raised.value.message
    assert "connection refused" in raised.value.message


async def test_containerd_restarted_under_a_live_client(containerd: Containerd, client: CRIClient) -> None:
    config = sandbox_config(containerd, "restart")
    sandbox_id = await client.run_pod_sandbox(config)
    try:
        container_id = await client.create_container(sandbox_id, container_config("sleeper", ["sleep", "300"]),
                                                     config)
        await client.start_container(container_id)
        containerd.stop()
        with pytest.raises(CRIUnavailableError) as raised:
            await client.version()
        assert raised.value.unavailable and raised.value.method == "Version"
        containerd.start()
        started = time.monotonic()
        while True:
            try:
                await client.version()
                break
            except CRIUnavailableError:
                assert time.monotonic() - started < 5, "no reconnect within 5 s"
                await asyncio.sleep(0.05)
        latencies.setdefault("reconnect after restart", []).append((time.monotonic() - started) * 1000)
        status = (await client.container_status(container_id)).status
        assert status.state == cri.CONTAINER_RUNNING  # the shim kept it
        await client.stop_container(container_id, timeout_s=0)
        assert (await client.container_status(container_id)).status.exit_code == 137
    finally:
        if containerd.process is None:  # the module's other tests need it
            containerd.start()
        await remove_sandbox(client, sandbox_id)


