"""What the agent asks of a container runtime: start a container from a spec, then watch it.

The agent sees only these types; nodeagent.agent.factories.make_runtime picks the implementation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from nodeagent.network.dnsfiles import PodDNS
from nodeagent.network.model import HostPort
from nodeagent.plan.pod import CgroupPlan
from nodeagent.runtime.session import ExecCommand, StreamSession


@dataclass(frozen=True, slots=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False
    propagation: str = "None"  # volumeMounts[].mountPropagation: None, HostToContainer, Bidirectional


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything a runtime needs to start one attempt of one container."""

    pod_name: str
    pod_namespace: str
    pod_uid: str
    name: str
    attempt: int  # the container's restart count
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str]
    working_dir: str | None
    run_as_user: int | None
    run_as_group: int | None
    supplemental_groups: tuple[int, ...]
    mounts: tuple[Mount, ...]
    cgroup: CgroupPlan
    oom_score_adj: int | None
    log_path: str
    hostname: str
    monitor_cgroup: str | None = None  # where the container's monitor (conmon) lives: the pod's cgroup
    pull_policy: str = "IfNotPresent"
    netns: str | None = None  # the pod's network namespace; None: the node's (hostNetwork)
    hosts_file: str | None = None  # /etc/hosts content for image-based runtimes
    resolv_conf: str | None = None
    privileged: bool = False
    read_only_root: bool = False
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    allow_privilege_escalation: bool | None = None
    run_as_non_root: bool = False  # the kubelet's check: refused when the container would run as uid 0
    seccomp_profile: str = "Unconfined"  # securityContext.seccompProfile.type: Unconfined, RuntimeDefault, Localhost
    seccomp_localhost: str | None = None  # Localhost: the profile's absolute path (<state dir>/seccomp/<name>)
    host_pid: bool = False  # spec.hostPID: the node's PID namespace
    host_ipc: bool = False  # spec.hostIPC: the node's IPC namespace
    sysctls: tuple[tuple[str, str], ...] = ()  # spec.securityContext.sysctls (validated: safe, namespaced)
    stdin: bool = False  # the container's stdin: true: a pipe that attached clients write to
    stdin_once: bool = False  # stdinOnce: that pipe is closed when the first attached client detaches
    tty: bool = False  # a terminal for the main process (its stdin, stdout and stderr): the cri runtime alone
    share_process_namespace: bool = False  # spec.shareProcessNamespace: one PID namespace for the pod


@dataclass(frozen=True, slots=True)
class ContainerExit:
    exit_code: int
    finished_at: dt.datetime
    oom_killed: bool
    oom_victim: str | None = None  # "stress (pid 8261)", when the kernel log names it
    unknown: bool = False  # the runtime lost track of it: the exit code is a guess (137)
    # the attempt that ended, where the runtime knows it: one the agent never saw start has only these
    started_at: dt.datetime | None = None
    container_id: str | None = None  # "<runtime>://<id>"


@dataclass(frozen=True, slots=True)
class ImageReady:
    """A container's image, present on the node."""

    image_ref: str  # what status.imageID shows: "docker.io/library/busybox@sha256:..."
    pulled: bool  # pulled just now (False: it was present already)
    seconds: float = 0.0  # how long the pull took
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    output: str  # stdout and stderr, shortened
    runtime_away: bool = False  # the runtime could not run it (away, restarting): no result at all


@dataclass(frozen=True, slots=True)
class AdoptionRecord:
    """What a runtime saves (in the pod's state file) to take a container back after an agent restart.

    `container_id` is the runtime's own ID (process and runc: the name of its bundle in the state directory,
    which the agent keeps while a record refers to it; cri: containerd's), `details` the rest, which only that
    runtime reads. Stored as {"ociId" | "criId": id, **details}, as earlier agents did."""

    container_id: str
    bundle: bool  # the container has a bundle in the state directory (process, runc)
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"ociId" if self.bundle else "criId": self.container_id, **self.details}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> AdoptionRecord:
        """The record, or ValueError for data that is not one (a damaged state file)."""
        bundle = "ociId" in data
        container_id = data.get("ociId" if bundle else "criId")
        if not isinstance(container_id, str):
            raise ValueError(f"not a saved container: {sorted(data)}")
        return AdoptionRecord(container_id, bundle, {k: v for k, v in data.items() if k not in ("ociId", "criId")})


@dataclass(frozen=True, slots=True)
class FoundContainer:
    """A running container found from the runtime's own records (its monitor's files, its labels), for a pod
    whose saved state the agent lost: what adopt() takes to watch it again."""

    name: str
    attempt: int  # its restart count, as its log file is named
    saved: AdoptionRecord


class RunningContainer(Protocol):
    """One started container attempt."""

    container_id: str  # "<runtime>://<id>", as Kubernetes shows it
    pid: int
    started_at: dt.datetime
    image_stop_signal: int | None  # the image's STOPSIGNAL (runc); None: the image has none, or no image

    async def wait(self) -> ContainerExit:
        """Until the container has exited (all its processes) and its logs are flushed."""

    def signal(self, signum: int) -> None:
        """Send a signal to the container's main process."""

    def kill(self) -> None:
        """SIGKILL every process of the container."""

    def saved(self) -> AdoptionRecord:
        """What to store so that the runtime can adopt this container after an agent restart."""

    async def reopen_log(self) -> bool:
        """Have the log's writer reopen its path (after a rotation renamed it); False if nothing writes it."""


class Runtime(Protocol):
    name: str
    host_mount_points: bool  # volumes are mounted over paths of the host (the process runtime)

    async def ensure_image(self, spec: ContainerSpec, on_pull: Callable[[], None]) -> ImageReady | None:
        """The container's image as its pull policy says, calling on_pull() before a pull begins; None for a
        runtime without images. RuntimeStartError (ErrImagePull, ErrImageNeverPull, InvalidImageName)."""

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        """Start the container; RuntimeStartError (with Kubernetes' reason) when it cannot."""

    async def adopt(self, spec: ContainerSpec, saved: AdoptionRecord) -> RunningContainer | ContainerExit:
        """Take back a container started before an agent restart: still running, or how it ended."""

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        """The pod's containers that run now, found without the agent's saved state (it was unreadable)."""

    async def find_ended(self, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        """That attempt of the pod's container if it ended and the runtime still knows how (an attempt the agent
        started but could not save before it was killed): what adopt() takes to say how it ended."""

    async def exec(self, running: RunningContainer, command: Sequence[str], timeout: float) -> ExecResult:
        """Run a command in the container (its cgroup, mounts, user, environment), as hooks and probes do."""


@runtime_checkable
class CommandExec(Protocol):
    """A runtime whose interactive commands (kubectl exec) the agent runs itself: process, runc."""

    def exec_command(self, running: RunningContainer, command: Sequence[str], *, tty: bool) -> ExecCommand:
        """How to run the command in the container (runtime.session runs it, with pipes or a terminal)."""


@runtime_checkable
class StreamingExec(Protocol):
    """A runtime that runs interactive commands behind a streaming server of its own (cri): the agent relays
    kubectl's WebSocket to it."""

    async def exec_url(self, running: RunningContainer, command: Sequence[str], *, stdin: bool, tty: bool) -> str:
        """The streaming server's URL for this command (stdout always; stderr unless tty)."""


@runtime_checkable
class Attachable(Protocol):
    """A running container whose main process's stdio the agent reaches itself (kubectl attach): process and
    runc, through conmon's attach socket."""

    async def attach(self, *, stdin: bool) -> StreamSession:
        """Its output from now on (and its stdin when `stdin`, if it has one); NodeAgentError if unreachable."""


@runtime_checkable
class StreamingAttach(Protocol):
    """A runtime whose containers are attached to behind its own streaming server (cri): the agent relays."""

    async def attach_url(self, running: RunningContainer, *, stdin: bool, tty: bool) -> str:
        """The streaming server's URL for the container's main process (stdout and stderr; stdin if asked)."""


@dataclass(frozen=True, slots=True)
class PodSandboxSpec:
    """What a runtime with pod sandboxes (cri) needs to make one: identity, cgroup, network and DNS."""

    name: str
    namespace: str
    uid: str
    hostname: str
    log_directory: str
    cgroup_parent: str  # the pod's cgroup as the driver spells it
    host_network: bool
    dns: PodDNS
    port_mappings: tuple[HostPort, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    privileged: bool = False  # a container of the pod is: the runtime must allow it in the sandbox
    host_pid: bool = False
    host_ipc: bool = False
    sysctls: tuple[tuple[str, str], ...] = ()
    share_process_namespace: bool = False


@dataclass(frozen=True, slots=True)
class Sandbox:
    id: str
    ip: str | None  # None: the node's network (hostNetwork)


@runtime_checkable
class PodSandboxes(Protocol):
    """A runtime that makes each pod a sandbox (its network, its containers' cgroups): cri."""

    async def run_pod_sandbox(self, pod: PodSandboxSpec) -> Sandbox:
        """The pod's sandbox: made now, or the one that runs already (after an agent restart)."""

    async def remove_pod_sandbox(self, uid: str) -> None:
        """Stop and remove the pod's sandboxes with their containers; nothing when there are none."""

    async def clean_up(self, known_uids: set[str]) -> list[str]:
        """Remove the sandboxes of nodeagent's pods that are not in `known_uids`; what was removed."""


@runtime_checkable
class ContainerBundles(Protocol):
    """A runtime whose containers have bundles in the state directory (process, runc), named by their
    AdoptionRecord's container_id, and conmon's exit files and sockets beside them."""

    def bundles(self) -> set[str]:
        """The bundles on disk now (blocking)."""

    def abandon(self, bundle: str) -> None:
        """Kill what a start cut short left of the bundle's container, then remove the bundle (blocking)."""

    def sweep(self) -> list[str]:
        """Remove conmon's exit files and sockets whose container is gone; what it removed (blocking)."""

    async def discard(self, saved: AdoptionRecord) -> None:
        """A container saved before an agent restart and never taken back (its pod was stopped first): killed
        if it still runs, and everything of it removed. A record that names no bundle is ignored."""


@runtime_checkable
class RuntimePreparation(Protocol):
    """A runtime with leftovers of an earlier agent to clear (runc: interrupted image pulls), before any pod."""

    async def prepare(self) -> None: ...


@runtime_checkable
class ReadyNotice(Protocol):
    """A runtime that defers work for the containers it takes back after a restart until the agent's READY
    (process, runc: their OOM watches)."""

    def agent_ready(self) -> None: ...


@runtime_checkable
class RuntimeConnection(Protocol):
    """A runtime reached over a connection (cri): connected before any pod, closed when the agent stops."""

    async def connect(self, cgroup_driver: str) -> None:
        """Reach the runtime and check that it can serve this agent (its cgroup driver); an error if not."""

    async def close(self) -> None: ...
