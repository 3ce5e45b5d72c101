"""The `cri` runtime: a CRI runtime (containerd, CRI-O) runs the pods; nodeagent decides and reports.

    set-up:  RunPodSandbox (the pod's network and cgroup parent; the running one again after a restart)
    start:   [PullImage] -> remove the container's previous exited attempt -> CreateContainer -> Start
    watch:   a pidfd on the container's main process (ContainerStatus verbose gives its pid), with a
             ContainerStatus poll as the fallback: exit code, finish time and OOMKilled as the runtime says
    stop:    signals to the main process; the final kill is StopContainer(timeout 0), which kills all of it
    teardown: StopPodSandbox + RemovePodSandbox, which remove the pod's containers with it

The runtime makes the containers' cgroups under the pod cgroup that nodeagent made (cgroup_parent),
from the LinuxContainerResources it is given, and keeps logs in the kubelet's layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nodeagent.api.signals import parse_signal
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.images.credentials import DockerConfigError, credentials_for_image, load_docker_config
from nodeagent.runtime.base import (
    AdoptionRecord,
    ContainerExit,
    ContainerSpec,
    ExecResult,
    FoundContainer,
    ImageReady,
    PodSandboxSpec,
    RunningContainer,
    Sandbox,
)
from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.cgroupdriver import query_cgroup_driver
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.container import CriContainer
from nodeagent.runtime.cri.endpoints import discover_endpoint
from nodeagent.runtime.cri.errors import CRIError
from nodeagent.runtime.cri.mapping import (
    CONTAINER_NAME,
    OURS,
    POD_UID,
    container_config,
    container_exit,
    sandbox_config,
    timestamp,
)
from nodeagent.runtime.execoutput import message
from nodeagent.runtime.procinfo import ProcessIdentity
from nodeagent.runtime.security import CONFIG_ERROR, verify_run_as_non_root

log = logging.getLogger(__name__)

EXIT_RECORDED_SECONDS = 5.0  # how long the runtime may take to record an exit we saw first


CONNECT_RETRY_SECONDS = (0.25, 2.0)  # the first wait, doubling up to the last


class DriverMismatchError(NodeAgentError):
    """nodeagent and the runtime use different cgroup drivers: the docs say they must not."""


class CriRuntime:
    name = "cri"
    host_mount_points = False

    def __init__(self, endpoint: str | None, *, cgroup_version: int, registry_auth_file: str | None = None) -> None:
        self.endpoint = endpoint  # None: found by connect()
        self.cgroup_version = cgroup_version
        self.registry_auth_file = registry_auth_file
        self.runtime_name = "cri"  # the container ID prefix: "containerd" once the runtime said its name
        self._client: CRIClient | None = None
        self._sandboxes: dict[str, tuple[str, cri.PodSandboxConfig]] = {}  # pod uid -> (id, config)

    @property
    def client(self) -> CRIClient:
        if self._client is None:  # made in the event loop that uses it, as grpc.aio requires
            assert self.endpoint is not None, "connect() first"
            self._client = CRIClient(self.endpoint)
        return self._client

    async def connect(self, cgroup_driver: str) -> None:
        """Find the runtime (the configured endpoint, or the one known socket that answers), ask it who it
        is, and refuse a cgroup driver other than ours."""
        self.endpoint = await discover_endpoint(self.endpoint)
        version = await self._first_answer()
        self.runtime_name = version.runtime_name or "cri"
        theirs = await query_cgroup_driver(self.client)
        log.info("cri: %s %s (CRI %s) at %s, cgroup driver %s", version.runtime_name, version.runtime_version,
                 version.runtime_api_version, self.endpoint, theirs or "not reported")
        if theirs is not None and theirs != cgroup_driver:
            setting = "SystemdCgroup = true" if cgroup_driver == "systemd" else "SystemdCgroup = false"
            raise DriverMismatchError(
                f"cgroup driver mismatch: nodeagent uses {cgroup_driver} but {version.runtime_name} at "
                f"{self.endpoint} uses {theirs}; the kubelet and the runtime must use the same: set cgroupDriver: "
                f"{theirs} in nodeagent's configuration, or {setting} in the runtime's (containerd: "
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options] in /etc/containerd/"
                "config.toml) and restart it")

    async def _first_answer(self) -> cri.VersionResponse:
        """The runtime's Version, waiting for a runtime that does not answer yet (started after the agent, or
        restarting), as the pods it runs go on without the agent: exiting would only leave them unwatched."""
        delay = CONNECT_RETRY_SECONDS[0]
        while True:
            try:
                return await self.client.version()
            except CRIError as exc:
                if not exc.unavailable:
                    raise
                if delay == CONNECT_RETRY_SECONDS[0]:
                    log.warning("cri: %s; waiting for it", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, CONNECT_RETRY_SECONDS[1])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- sandboxes ---------------------------------------------------------------------------------

    async def run_pod_sandbox(self, pod: PodSandboxSpec) -> Sandbox:
        found = await self.client.list_pod_sandbox(labels={POD_UID: pod.uid, **OURS})
        ready = [s for s in found if s.state == cri.SANDBOX_READY]
        if ready:
            sandbox = max(ready, key=lambda s: s.metadata.attempt)
            sandbox_id, config = sandbox.id, sandbox_config(pod, sandbox.metadata.attempt)
        else:
            attempt = max((s.metadata.attempt + 1 for s in found), default=0)
            for dead in found:  # its containers died with it; they are started again in the new one
                await self._remove_sandbox(dead.id)
            config = sandbox_config(pod, attempt)
            try:
                sandbox_id = await self.client.run_pod_sandbox(config)
            except CRIError as exc:
                raise RuntimeStartError("CreatePodSandboxError", f'Failed to create pod sandbox: {exc.message}') \
                    from exc
            log.info("pod=%s/%s uid=%s: sandbox %s (attempt %d)", pod.namespace, pod.name, pod.uid, sandbox_id,
                     attempt)
        self._sandboxes[pod.uid] = (sandbox_id, config)
        status = await self.client.pod_sandbox_status(sandbox_id)
        return Sandbox(sandbox_id, None if pod.host_network else status.status.network.ip or None)

    async def remove_pod_sandbox(self, uid: str) -> None:
        self._sandboxes.pop(uid, None)
        for sandbox in await self.client.list_pod_sandbox(labels={POD_UID: uid, **OURS}):
            await self._remove_sandbox(sandbox.id)

    async def clean_up(self, known_uids: set[str]) -> list[str]:
        removed = []
        for sandbox in await self.client.list_pod_sandbox(labels=OURS):
            if sandbox.labels.get(POD_UID) not in known_uids:
                await self._remove_sandbox(sandbox.id)
                removed.append(f"sandbox {sandbox.id} of pod {sandbox.metadata.namespace}/{sandbox.metadata.name}")
        for line in removed:
            log.info("clean-up removed %s", line)
        return removed

    async def _remove_sandbox(self, sandbox_id: str) -> None:
        await self.client.stop_pod_sandbox(sandbox_id)
        await self.client.remove_pod_sandbox(sandbox_id)

    # -- images ------------------------------------------------------------------------------------

    async def ensure_image(self, spec: ContainerSpec, on_pull: Callable[[], None]) -> ImageReady | None:
        present = await self.client.image_status(spec.image)
        if present is not None and spec.pull_policy != "Always":
            return ImageReady(image_ref=_image_ref(present), pulled=False)
        if spec.pull_policy == "Never":
            raise RuntimeStartError("ErrImageNeverPull", f'Container image "{spec.image}" is not present with pull '
                                                         "policy of Never")
        on_pull()
        began = time.monotonic()
        await self._pull(spec.image)
        pulled = await self.client.image_status(spec.image)
        if pulled is None:
            raise RuntimeStartError("ErrImagePull", f"the runtime pulled {spec.image} but does not have it")
        return ImageReady(image_ref=_image_ref(pulled), pulled=True, seconds=time.monotonic() - began,
                          size_bytes=pulled.size)

    async def _pull(self, image: str) -> None:
        """PullImage with each credential that matches the image in turn, as the kubelet does; then without."""
        try:
            config = (await asyncio.to_thread(load_docker_config, Path(self.registry_auth_file))
                      if self.registry_auth_file else {})
        except DockerConfigError as exc:
            raise RuntimeStartError("ErrImagePull", str(exc)) from exc
        last: CRIError | None = None
        # server_address stays empty: containerd drops credentials whose server_address it cannot parse as
        # a URL of the registry, and the kubelet leaves it empty too.
        attempts: list[cri.AuthConfig | None] = [
            cri.AuthConfig(username=c.username, password=c.password, identity_token=c.identity_token,
                           registry_token=c.registry_token)
            for c in credentials_for_image(config, image)] or [None]
        for auth in attempts:
            try:
                await self.client.pull_image(image, auth=auth)
                return
            except CRIError as exc:
                last = exc
        assert last is not None
        raise RuntimeStartError("ErrImagePull", f"rpc error: code = {_go_code(last.code)} desc = {last.message}")

    # -- containers --------------------------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        sandbox = self._sandboxes.get(spec.pod_uid)
        if sandbox is None:
            raise RuntimeStartError("CreateContainerError", "the pod has no sandbox")
        sandbox_id, sandbox_config_ = sandbox
        if spec.run_as_non_root and spec.run_as_user is None:
            verify_run_as_non_root(spec, await self._image_user(spec.image))
        await self._remove_previous(sandbox_id, spec.name)
        config = container_config(spec, sandbox_config_, self.cgroup_version)
        try:
            container_id = await self.client.create_container(sandbox_id, config, sandbox_config_)
        except CRIError as exc:
            raise RuntimeStartError("CreateContainerError", exc.message) from exc
        try:
            await self.client.start_container(container_id)
        except CRIError as exc:
            with contextlib.suppress(CRIError):
                await self.client.remove_container(container_id)
            raise RuntimeStartError("RunContainerError", exc.message) from exc
        status, pid = await self._status(container_id)
        container = CriContainer(self, container_id, pid, timestamp(status.started_at) if status.started_at
                                 else dt.datetime.now(dt.UTC), await self._image_stop_signal(spec.image))
        container.watch()
        return container

    async def _image_stop_signal(self, image: str) -> int | None:
        """The image's STOPSIGNAL, which containerd would send on StopContainer: nodeagent signals the process
        itself, so it reads it (ImageStatus verbose: imageSpec.config.StopSignal); None when there is none."""
        try:
            info = await self.client.image_info(image)
            value = json.loads(info.get("info", "{}")).get("imageSpec", {}).get("config", {}).get("StopSignal")
        except (CRIError, ValueError, AttributeError) as exc:
            log.debug("image %s: no stop signal read: %s", image, exc)
            return None
        return parse_signal(value) if isinstance(value, str) and value else None

    async def _image_user(self, image: str) -> str:
        """The image's user as the runtime reports it, as the kubelet reads it for runAsNonRoot: its uid, else
        its name; none is root."""
        try:
            found = await self.client.image_status(image)
        except CRIError as exc:
            raise RuntimeStartError(CONFIG_ERROR, exc.message) from exc
        if found is None:
            return ""
        return str(found.uid.value) if found.HasField("uid") else found.username

    async def _remove_previous(self, sandbox_id: str, name: str) -> None:
        """The container's earlier exited attempt (kept until now, as the kubelet keeps one, for its status),
        and any other of its name: one a start cut short by an agent restart left behind, unknown to this
        agent and maybe running. A container is only started when none of its name runs."""
        for old in await self.client.list_containers(sandbox_id=sandbox_id, labels={CONTAINER_NAME: name}):
            if old.state == cri.CONTAINER_RUNNING:
                log.warning("container %s (%s): running, unknown to the agent (a start cut short?); stopping it "
                            "before the next start", old.id, name)
                await self.client.stop_container(old.id, timeout_s=0)
            await self.client.remove_container(old.id)

    async def _status(self, container_id: str) -> tuple[cri.ContainerStatus, ProcessIdentity | None]:
        response = await self.client.container_status(container_id, verbose=True)
        pid = _pid(response.info)
        return response.status, ProcessIdentity.of(pid) if pid else None

    async def adopt(self, spec: ContainerSpec, saved: AdoptionRecord) -> RunningContainer | ContainerExit:
        container_id = saved.container_id
        try:
            status, identity = await self._status(container_id)
        except CRIError as exc:
            if not exc.not_found:
                raise
            return ContainerExit(137, dt.datetime.now(dt.UTC), oom_killed=False, unknown=True)
        if status.state != cri.CONTAINER_RUNNING:
            return container_exit(status, self.runtime_name)
        process = saved.details.get("process")
        saved_identity = ProcessIdentity.from_json(process) if process is not None else identity
        stop_signal = saved.details.get("imageStopSignal")
        container = CriContainer(self, container_id, saved_identity, timestamp(status.started_at),
                                 stop_signal if isinstance(stop_signal, int) else None)
        container.watch()
        return container

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        found = []
        for container in await self.client.list_containers(labels={POD_UID: pod_uid, **OURS},
                                                           state=cri.CONTAINER_RUNNING):
            _, identity = await self._status(container.id)
            saved = AdoptionRecord(container.id, False, {"process": identity.to_json()} if identity else {})
            found.append(FoundContainer(container.metadata.name, container.metadata.attempt, saved))
        return found

    async def find_ended(self, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        """containerd keeps an exited container, with its exit code, until it is removed."""
        for container in await self.client.list_containers(labels={POD_UID: pod_uid, **OURS},
                                                           state=cri.CONTAINER_EXITED):
            if (container.metadata.name, container.metadata.attempt) == (name, attempt):
                return AdoptionRecord(container.id, False, {})
        return None

    async def exec(self, running: RunningContainer, command: Sequence[str], timeout: float) -> ExecResult:
        assert isinstance(running, CriContainer)
        try:
            response = await self.client.exec_sync(running.cri_id, command, timeout_s=max(1, math.ceil(timeout)))
        except CRIError as exc:
            return ExecResult(exit_code=-1, output=exc.message, runtime_away=exc.unavailable)
        return ExecResult(exit_code=response.exit_code, output=message(response.stdout + response.stderr))

    async def exec_url(self, running: RunningContainer, command: Sequence[str], *, stdin: bool, tty: bool) -> str:
        assert isinstance(running, CriContainer)
        try:
            return await self.client.exec(running.cri_id, command, stdin=stdin, tty=tty)
        except CRIError as exc:
            raise NodeAgentError(f"exec in {running.container_id}: {exc.message}") from exc

    async def attach_url(self, running: RunningContainer, *, stdin: bool, tty: bool) -> str:
        assert isinstance(running, CriContainer)
        try:
            return await self.client.attach(running.cri_id, stdin=stdin, tty=tty)
        except CRIError as exc:
            raise NodeAgentError(f"attach to {running.container_id}: {exc.message}") from exc

    async def exited(self, container_id: str) -> cri.ContainerStatus | None:
        """The container's status once the runtime has recorded its exit; None if it is unknown to it."""
        deadline = time.monotonic() + EXIT_RECORDED_SECONDS
        while True:
            try:
                status = (await self.client.container_status(container_id)).status
            except CRIError as exc:
                if exc.not_found:
                    return None
                if not exc.unavailable:
                    raise
                status = None  # the runtime restarts: ask again
            if status is not None and status.state == cri.CONTAINER_EXITED:
                return status
            if time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.02)


def _pid(info: Mapping[str, str]) -> int | None:
    """The main process's pid from ContainerStatus(verbose)'s info (containerd: {"info": {"pid": N, ...}})."""
    try:
        return int(json.loads(info["info"])["pid"]) or None
    except (KeyError, ValueError, TypeError):
        return None


def _image_ref(image: cri.Image) -> str:
    """What status.imageID shows: the repo digest when there is one, else the image ID."""
    return image.repo_digests[0] if image.repo_digests else image.id


def _go_code(code: str) -> str:
    """gRPC's code name as Go prints it (NOT_FOUND -> NotFound), as in the kubelet's messages."""
    return "".join(part.capitalize() for part in code.split("_"))
