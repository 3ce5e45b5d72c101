"""An asyncio client for a CRI runtime (runtime.v1 over gRPC on a Unix socket), as the kubelet calls it.

Every call has a deadline (Deadlines); every gRPC failure leaves as a CRIError, with
CRIUnavailableError when nobody answers and CRITimeoutError when the deadline passed. Requests and
responses are the generated runtime.v1 messages (api_pb2), typed by their stubs.

A runtime that goes away and comes back needs nothing from the caller: grpc.aio reconnects the
channel, and its reconnect back-off is capped at `reconnect_max_ms` (grpc's default grows to 120 s),
so a restarted containerd is reached again within about a second. Meanwhile calls fail at once with
CRIUnavailableError instead of waiting for the runtime.

    async with CRIClient("unix:///run/containerd/containerd.sock") as cri:
        sandbox_id = await cri.run_pod_sandbox(sandbox_config)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from nodeagent.runtime.cri import api_pb2, api_pb2_grpc
from nodeagent.runtime.cri.errors import CRIEndpointError, CRIError, CRITimeoutError, CRIUnavailableError

logger = logging.getLogger(__name__)

CRI_API_VERSION = "v1"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the kubelet's limit for CRI messages
NOT_INITIALIZED = "server is not initialized yet"  # containerd's CRI plugin, while it starts

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds a call may take before it fails with CRITimeoutError (the kubelet uses 2 min for all)."""

    status_s: float = 2.0  # Version, Status, RuntimeConfig, *Status, List*, ImageStatus, ListImages
    lifecycle_s: float = 30.0  # Run/Stop/RemovePodSandbox, Create/Start/RemoveContainer; added to
    #                            StopContainer's grace period and ExecSync's timeout, as the kubelet does
    pull_s: float = 240.0  # PullImage
    reconnect_max_ms: int = 1000  # grpc's reconnect back-off cap


def translate_error(method: str, error: grpc.aio.AioRpcError, endpoint: str) -> CRIError:
    """The CRIError for a failed call: the status code's name and the runtime's own message.

    containerd answers UNKNOWN "server is not initialized yet" for a moment after it starts (its CRI
    plugin is still loading its state): that is unavailable too, and goes the same way.
    """
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    message = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE or (code == grpc.StatusCode.UNKNOWN and message == NOT_INITIALIZED):
        return CRIUnavailableError(method, name, message, endpoint=endpoint)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CRITimeoutError(method, name, message, endpoint=endpoint)
    return CRIError(method, name, message, endpoint=endpoint)


class CRIClient:
    """RuntimeService and ImageService of one runtime endpoint ("unix:///path/to.sock").

    Create it inside the event loop that uses it (grpc.aio binds the channel to that loop).
    """

    def __init__(self, endpoint: str, *, deadlines: Deadlines | None = None) -> None:
        if not endpoint.startswith("unix:///"):
            raise CRIEndpointError(f"CRI endpoint {endpoint!r}: expected unix:///absolute/path "
                                   "(nodeagent.runtime.cri.endpoints.parse_endpoint normalizes it)")
        self.endpoint = endpoint
        self.deadlines = deadlines or Deadlines()
        reconnect_ms = self.deadlines.reconnect_max_ms
        self._channel = grpc.aio.insecure_channel(endpoint, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Not grpc.min_reconnect_backoff_ms: grpc also takes it as the connect timeout, and a runtime
            # that accepts but does not answer must run into the call's deadline, not a 100 ms timeout.
            ("grpc.initial_reconnect_backoff_ms", min(100, reconnect_ms)),
            ("grpc.max_reconnect_backoff_ms", reconnect_ms),
        ])
        self._runtime = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self._images = api_pb2_grpc.ImageServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> CRIClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def _call(self, method: str, call: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
                    request: Request, timeout_s: float) -> Response:
        started = time.monotonic()
        try:
            response = await call(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            translated = translate_error(method, error, self.endpoint)
            logger.debug("cri call=%s failed after %.1f ms: %s", method, (time.monotonic() - started) * 1000,
                         translated)
            raise translated from error
        logger.debug("cri call=%s took %.1f ms", method, (time.monotonic() - started) * 1000)
        return response

    # -- runtime -------------------------------------------------------------------------------------

    async def version(self) -> api_pb2.VersionResponse:
        return await self._call("Version", self._runtime.Version, api_pb2.VersionRequest(version=CRI_API_VERSION),
                                self.deadlines.status_s)

    async def status(self, *, verbose: bool = False) -> api_pb2.StatusResponse:
        """Runtime conditions (RuntimeReady, NetworkReady); with verbose, `info` (containerd: its config)."""
        return await self._call("Status", self._runtime.Status, api_pb2.StatusRequest(verbose=verbose),
                                self.deadlines.status_s)

    async def runtime_config(self) -> api_pb2.RuntimeConfigResponse:
        """The runtime's cgroup driver; CRIError code UNIMPLEMENTED before containerd 2.0 and CRI-O 1.31."""
        return await self._call("RuntimeConfig", self._runtime.RuntimeConfig, api_pb2.RuntimeConfigRequest(),
                                self.deadlines.status_s)

    # -- sandboxes -----------------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: api_pb2.PodSandboxConfig, *, runtime_handler: str = "") -> str:
        """Create and start a sandbox; its ID."""
        request = api_pb2.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        response = await self._call("RunPodSandbox", self._runtime.RunPodSandbox, request,
                                    self.deadlines.lifecycle_s)
        return response.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox and kill its containers; idempotent."""
        await self._call("StopPodSandbox", self._runtime.StopPodSandbox,
                         api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), self.deadlines.lifecycle_s)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers; idempotent."""
        await self._call("RemovePodSandbox", self._runtime.RemovePodSandbox,
                         api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), self.deadlines.lifecycle_s)

    async def pod_sandbox_status(self, sandbox_id: str, *, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        request = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return await self._call("PodSandboxStatus", self._runtime.PodSandboxStatus, request,
                                self.deadlines.status_s)

    async def list_pod_sandbox(self, *, labels: Mapping[str, str] | None = None,
                               state: api_pb2.PodSandboxState.ValueType | None = None,
                               sandbox_id: str | None = None) -> list[api_pb2.PodSandbox]:
        """Sandboxes matching every given filter (labels: all must match)."""
        selector = api_pb2.PodSandboxFilter(label_selector=labels or {}, id=sandbox_id or "")
        if state is not None:
            selector.state.state = state
        response = await self._call("ListPodSandbox", self._runtime.ListPodSandbox,
                                    api_pb2.ListPodSandboxRequest(filter=selector), self.deadlines.status_s)
        return list(response.items)

    # -- containers ----------------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: api_pb2.ContainerConfig,
                               sandbox_config: api_pb2.PodSandboxConfig) -> str:
        """Create a container in the sandbox (sandbox_config: the one it was run with); its ID."""
        request = api_pb2.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config,
                                                 sandbox_config=sandbox_config)
        response = await self._call("CreateContainer", self._runtime.CreateContainer, request,
                                    self.deadlines.lifecycle_s)
        return response.container_id

    async def start_container(self, container_id: str) -> None:
        await self._call("StartContainer", self._runtime.StartContainer,
                         api_pb2.StartContainerRequest(container_id=container_id), self.deadlines.lifecycle_s)

    async def stop_container(self, container_id: str, *, timeout_s: int) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after timeout_s; idempotent."""
        request = api_pb2.StopContainerRequest(container_id=container_id, timeout=timeout_s)
        await self._call("StopContainer", self._runtime.StopContainer, request,
                         max(timeout_s, 0) + self.deadlines.lifecycle_s)

    async def remove_container(self, container_id: str) -> None:
        """Remove the container, killing it if it runs; idempotent."""
        await self._call("RemoveContainer", self._runtime.RemoveContainer,
                         api_pb2.RemoveContainerRequest(container_id=container_id), self.deadlines.lifecycle_s)

    async def container_status(self, container_id: str, *, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        """State, times (ns since the epoch), exit code, reason ("OOMKilled"), log path; info with verbose."""
        request = api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return await self._call("ContainerStatus", self._runtime.ContainerStatus, request, self.deadlines.status_s)

    async def list_containers(self, *, sandbox_id: str | None = None, labels: Mapping[str, str] | None = None,
                              state: api_pb2.ContainerState.ValueType | None = None,
                              container_id: str | None = None) -> list[api_pb2.Container]:
        """Containers matching every given filter (labels: all must match)."""
        selector = api_pb2.ContainerFilter(pod_sandbox_id=sandbox_id or "", label_selector=labels or {},
                                           id=container_id or "")
        if state is not None:
            selector.state.state = state
        response = await self._call("ListContainers", self._runtime.ListContainers,
                                    api_pb2.ListContainersRequest(filter=selector), self.deadlines.status_s)
        return list(response.containers)

    async def exec_sync(self, container_id: str, command: Sequence[str], *, timeout_s: int) -> api_pb2.ExecSyncResponse:
        """Run a command in the container; its exit code, stdout and stderr (each capped at 16 MiB)."""
        request = api_pb2.ExecSyncRequest(container_id=container_id, cmd=list(command), timeout=timeout_s)
        return await self._call("ExecSync", self._runtime.ExecSync, request,
                                max(timeout_s, 0) + self.deadlines.lifecycle_s)

    async def exec(self, container_id: str, command: Sequence[str], *, stdin: bool, tty: bool) -> str:
        """The runtime's streaming-server URL for an interactive command (stdout always, stderr unless tty)."""
        request = api_pb2.ExecRequest(container_id=container_id, cmd=list(command), stdin=stdin, tty=tty,
                                      stdout=True, stderr=not tty)
        return str((await self._call("Exec", self._runtime.Exec, request, self.deadlines.status_s)).url)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> str:
        """The runtime's streaming-server URL for attaching to the container's main process (`tty` as the
        container has it: then stdout alone, its terminal's output)."""
        request = api_pb2.AttachRequest(container_id=container_id, stdin=stdin, tty=tty, stdout=True, stderr=not tty)
        return str((await self._call("Attach", self._runtime.Attach, request, self.deadlines.status_s)).url)

    async def reopen_container_log(self, container_id: str) -> None:
        """Have the runtime write the container's log at its path anew (after a rotation renamed it)."""
        await self._call("ReopenContainerLog", self._runtime.ReopenContainerLog,
                         api_pb2.ReopenContainerLogRequest(container_id=container_id), self.deadlines.status_s)

    # -- images --------------------------------------------------------------------------------------

    async def pull_image(self, image: str, *, auth: api_pb2.AuthConfig | None = None,
                         sandbox_config: api_pb2.PodSandboxConfig | None = None) -> str:
        """Pull the image; its reference in the runtime (image ID or digest)."""
        request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image), auth=auth,
                                           sandbox_config=sandbox_config)
        response = await self._call("PullImage", self._images.PullImage, request, self.deadlines.pull_s)
        return response.image_ref

    async def image_status(self, image: str) -> api_pb2.Image | None:
        """The image as the runtime has it, or None when it does not have it."""
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image))
        response = await self._call("ImageStatus", self._images.ImageStatus, request, self.deadlines.status_s)
        return response.image if response.HasField("image") else None

    async def image_info(self, image: str) -> Mapping[str, str]:
        """ImageStatus(verbose)'s info: containerd's {"info": JSON with the image's config as "imageSpec"}."""
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image), verbose=True)
        response = await self._call("ImageStatus", self._images.ImageStatus, request, self.deadlines.status_s)
        return dict(response.info)

    async def list_images(self, *, image: str | None = None) -> list[api_pb2.Image]:
        selector = api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=image)) if image else None
        response = await self._call("ListImages", self._images.ListImages,
                                    api_pb2.ListImagesRequest(filter=selector), self.deadlines.status_s)
        return list(response.images)
