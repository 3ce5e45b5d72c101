"""What nodeagent knows of each container: the state Kubernetes reports, kept as frozen records.

    Waiting(ContainerCreating) --start--> Running --exit--> Terminated
        ^                                                       |
        +---- restart (maybe after CrashLoopBackOff) -----------+

Records change only by replacement, through the typed steps below; the status API derives everything else.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field, replace

from nodeagent.agent.backoff import Backoff
from nodeagent.agent.lifecycle import ObservedContainer
from nodeagent.api.model import Container, Pod
from nodeagent.runtime.base import AdoptionRecord, RunningContainer


class State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


UNKNOWN = "ContainerStatusUnknown"
LOST = "The container ended while the agent could not save its state"


@dataclass(frozen=True, slots=True)
class Termination:
    exit_code: int
    reason: str  # OOMKilled, Completed, Error
    started_at: dt.datetime | None
    finished_at: dt.datetime
    container_id: str | None
    message: str | None = None
    signal: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    name: str
    image: str
    init: bool
    state: State = State.WAITING
    reason: str | None = "ContainerCreating"  # the waiting reason
    message: str | None = None
    started_at: dt.datetime | None = None  # while running
    container_id: str | None = None
    pid: int | None = None
    restart_count: int = 0
    terminated: Termination | None = None  # while terminated
    last_termination: Termination | None = None
    ready: bool = False
    image_id: str = ""  # the image's digest reference, once the runtime has it
    sidecar: bool = False  # an init container with restartPolicy: Always (from the spec, never saved)

    @property
    def next_attempt(self) -> int:
        """The attempt its next start is (its log file's number): the count, plus one once an attempt began."""
        return self.restart_count + (1 if self.container_id is not None or self.terminated is not None else 0)

    def waiting(self, reason: str | None, message: str | None = None) -> ContainerRecord:
        """Waiting to start, or to start again: a termination becomes the last one."""
        last = self.terminated if self.terminated is not None else self.last_termination
        return replace(self, state=State.WAITING, reason=reason, message=message, terminated=None,
                       last_termination=last)

    def started(self, started_at: dt.datetime, container_id: str, pid: int, *, ready: bool, attempt: int,
                image_id: str) -> ContainerRecord:
        """Running: a new attempt (its restart count), the previous termination as the last one."""
        last = self.terminated if self.terminated is not None else self.last_termination
        return replace(self, state=State.RUNNING, reason=None, message=None, started_at=started_at,
                       container_id=container_id, pid=pid, restart_count=attempt, terminated=None,
                       last_termination=last, ready=ready, image_id=image_id)

    def taken_back(self, started_at: dt.datetime, container_id: str, pid: int, *, ready: bool) -> ContainerRecord:
        """Running, found after an agent restart without its saved state."""
        return replace(self, state=State.RUNNING, reason=None, message=None, started_at=started_at,
                       container_id=container_id, pid=pid, terminated=None, ready=ready)

    def caught_up(self, attempt: int, now: dt.datetime) -> ContainerRecord:
        """Attempts up to `attempt` began after the last save that reached the disk (a full state directory,
        then the agent killed): their count; the attempt this record knew as running ended unrecorded, and
        so did `attempt`, unless it is found running and taken back (ContainerStatusUnknown, 137: the kubelet's
        words for a container whose end it lost). The last termination is the attempt before `attempt`: lost too
        if it began after that save (the record knew it waiting to start, or not at all)."""
        lost = Termination(137, UNKNOWN, None, now, None, LOST)
        last: Termination | None
        if attempt - 1 >= self.next_attempt:
            last = lost
        elif self.state is State.RUNNING:
            last = Termination(137, UNKNOWN, self.started_at, now, self.container_id, LOST)
        else:
            last = self.terminated if self.terminated is not None else self.last_termination
        return replace(self, state=State.TERMINATED, reason=None, message=None, started_at=None, pid=None,
                       restart_count=attempt, terminated=lost, last_termination=last, ready=False)

    def ended(self, termination: Termination) -> ContainerRecord:
        return replace(self, state=State.TERMINATED, reason=None, message=None, started_at=None, pid=None,
                       terminated=termination, ready=False)

    def with_ready(self, ready: bool) -> ContainerRecord:
        return replace(self, ready=ready)


def initial_records(pod: Pod) -> dict[str, ContainerRecord]:
    """Each container's record before anything ran: init containers (and sidecars) first, in spec order."""
    records = {}
    for container in pod.spec.init_containers or []:
        records[container.valid_name] = ContainerRecord(container.valid_name, container.image or "", init=True,
                                                        reason="PodInitializing", sidecar=container.is_sidecar)
    initial = "PodInitializing" if pod.spec.init_containers else "ContainerCreating"
    for container in pod.spec.containers or []:
        records[container.valid_name] = ContainerRecord(container.valid_name, container.image or "", init=False,
                                                        reason=initial)
    return records


@dataclass(slots=True)
class ContainerSlot:
    """What a worker keeps of one container besides its record: its spec, its lifecycle state, its live
    instance, its back-offs, and what an agent restart left it to take back."""

    container: Container
    observed: ObservedContainer = field(default_factory=ObservedContainer)
    running: RunningContainer | None = None
    backoff: Backoff | None = None  # the crash-loop back-off
    pull_backoff: Backoff | None = None
    finished_at: float | None = None  # monotonic: its last exit
    adoptable: AdoptionRecord | None = None  # saved before an agent restart, until taken back


def termination_reason(exit_code: int, oom_killed: bool, unknown: bool = False) -> str:
    """Kubernetes' words for an exit: OOMKilled from the cgroup's counter, else by exit code."""
    if oom_killed:
        return "OOMKilled"
    if unknown:
        return UNKNOWN
    return "Completed" if exit_code == 0 else "Error"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """ShouldContainerBeRestarted for an exited container."""
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure":
        return exit_code != 0
    return True


def state_label(record: ContainerRecord) -> str:
    return record.state.value.capitalize()


def reason_label(record: ContainerRecord) -> str:
    if record.state is State.TERMINATED and record.terminated is not None:
        return f"{record.terminated.reason} exitCode={record.terminated.exit_code}"
    return record.reason or "-"
