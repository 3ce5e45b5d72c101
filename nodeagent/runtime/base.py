"""What the agent asks of a container runtime: start a container from a spec, then watch it.

The agent sees only these types; nodeagent.agent.app.make_runtime picks the implementation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from nodeagent.network.dnsfiles import PodDNS
from nodeagent.network.model import HostPort
from nodeagent.plan.pod import CgroupPlan
from nodeagent.runtime.session import ExecCommand


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


@dataclass(frozen=True, slots=True)
class ContainerExit:
    exit_code: int
    finished_at: dt.datetime
    oom_killed: bool
    oom_victim: str | None = None  # "stress (pid 8261)", when the kernel log names it
    unknown: bool = False  # the runtime lost track of it: the exit code is a guess (137)


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
class FoundContainer:
    """A running container found from the runtime's own records (its monitor's files, its labels), for a pod
    whose saved state the agent lost: what adopt() takes to watch it again."""

    name: str
    attempt: int  # its restart count, as its log file is named
    saved: Mapping[str, Any]


class RunningContainer(Protocol):
    """One started container attempt."""

    container_id: str  # "<runtime>://<id>", as Kubernetes shows it
    pid: int
    started_at: dt.datetime

    async def wait(self) -> ContainerExit:
        """Until the container has exited (all its processes) and its logs are flushed."""

    def signal(self, signum: int) -> None:
        """Send a signal to the container's main process."""

    def kill(self) -> None:
        """SIGKILL every process of the container."""

    def saved(self) -> dict[str, Any]:
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

    async def adopt(self, spec: ContainerSpec, saved: Mapping[str, Any]) -> RunningContainer | ContainerExit:
        """Take back a container started before an agent restart: still running, or how it ended."""

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        """The pod's containers that run now, found without the agent's saved state (it was unreadable)."""

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
class Discarding(Protocol):
    """A runtime whose containers leave files behind them (process, runc: conmon's bundle, exit file, socket)."""

    async def discard(self, saved: Mapping[str, Any]) -> None:
        """A container saved before an agent restart and never taken back (its pod was stopped first): killed
        if it still runs, and everything of it removed. An unusable `saved` is ignored."""


@runtime_checkable
class RuntimePreparation(Protocol):
    """A runtime with leftovers of an earlier agent to clear (runc: interrupted image pulls), before any pod."""

    async def prepare(self) -> None: ...


@runtime_checkable
class RuntimeConnection(Protocol):
    """A runtime reached over a connection (cri): connected before any pod, closed when the agent stops."""

    async def connect(self, cgroup_driver: str) -> None:
        """Reach the runtime and check that it can serve this agent (its cgroup driver); an error if not."""

    async def close(self) -> None: ...
