"""The systemd cgroup driver: the kubelet's slices as transient units, over D-Bus (dbus-fast, asyncio).

    kubepods.slice, kubepods-burstable.slice, kubepods-burstable-pod<uid_>.slice  StartTransientUnit,
        the plan's values as unit properties, SetUnitProperties when they change, StopUnit to remove;
    each container of the process runtime: a transient scope in its pod's slice (PIDs, Delegate).
Every job is awaited (JobRemoved) and a failed one is reported with systemd's own words. What
systemd cannot express (v1 memsw, memory.oom.group, hugetlb limits) is written to the unit's cgroup files
afterwards, as the kubelet does. Reading (usage, OOM counters, processes) goes to the files: the
unit's cgroup is an ordinary cgroup once systemd made it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from nodeagent.cgroups import oom
from nodeagent.cgroups.driver import CgroupfsDriver, Hierarchy, Usage
from nodeagent.errors import CgroupError
from nodeagent.plan.formulas import shares_to_weight
from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import UNLIMITED, ResourceConfig

log = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
INFINITY = 2**64 - 1
JOB_TIMEOUT_SECONDS = 30.0
CALL_TIMEOUT_SECONDS = 25.0  # sd-bus's own default: a systemd that does not answer is an error, not a hang


def unit_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _bytes(value: int) -> int:
    return INFINITY if value == UNLIMITED else value


def unit_properties(config: ResourceConfig, cgroup_version: int) -> list[tuple[str, Variant]]:
    """The plan's values as systemd properties (libcontainer's systemd driver's mapping)."""
    props: list[tuple[str, Variant]] = [
        ("CPUAccounting", Variant("b", True)), ("MemoryAccounting", Variant("b", True)),
        ("TasksAccounting", Variant("b", True)),
    ]
    if config.cpu_shares is not None:
        if cgroup_version == 2:
            props.append(("CPUWeight", Variant("t", shares_to_weight(config.cpu_shares))))
        else:
            props.append(("CPUShares", Variant("t", config.cpu_shares)))
    if config.cpu_quota_us is not None and config.cpu_quota_us > 0 and config.cpu_period_us:
        props.append(("CPUQuotaPerSecUSec", Variant("t", config.cpu_quota_us * 1_000_000 // config.cpu_period_us)))
    if config.cpu_period_us is not None:
        props.append(("CPUQuotaPeriodUSec", Variant("t", config.cpu_period_us)))
    if config.memory_bytes is not None:
        props.append(("MemoryMax" if cgroup_version == 2 else "MemoryLimit", Variant("t", _bytes(config.memory_bytes))))
    if cgroup_version == 2 and config.swap_max_bytes is not None:
        props.append(("MemorySwapMax", Variant("t", _bytes(config.swap_max_bytes))))
    if config.memory_min_bytes is not None:
        props.append(("MemoryMin", Variant("t", config.memory_min_bytes)))
    if config.memory_high_bytes is not None:
        props.append(("MemoryHigh", Variant("t", _bytes(config.memory_high_bytes))))
    if config.pids_max is not None:
        props.append(("TasksMax", Variant("t", _bytes(config.pids_max))))
    return props


def files_systemd_cannot_set(files: dict[str, str], cgroup_version: int) -> dict[str, str]:
    """The plan's files no property carries: written to the unit's cgroup after systemd made it."""
    left = {}
    if cgroup_version == 1 and "memory.memsw.limit_in_bytes" in files:
        left["memory.memsw.limit_in_bytes"] = files["memory.memsw.limit_in_bytes"]
    if cgroup_version == 2 and "memory.oom.group" in files:
        left["memory.oom.group"] = files["memory.oom.group"]
    left.update({name: value for name, value in files.items() if name.startswith("hugetlb.")})  # no property
    return left


class SystemdDriver:
    """The CgroupDriver protocol over systemd; reads and kills through the unit cgroups' files."""

    name = "systemd"

    def __init__(self, hierarchy: Hierarchy, *, bus_address: str | None = None) -> None:
        self.version = hierarchy.version
        self.files = CgroupfsDriver(hierarchy)  # the same paths: systemd's units are cgroups too
        self.bus_address = bus_address
        self._bus: MessageBus | None = None
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._finished: dict[str, str] = {}  # JobRemoved seen before its waiter registered
        self._scopes: dict[str, CgroupPlan] = {}  # container scopes planned, made when their process comes
        self._lock = asyncio.Lock()

    # -- D-Bus ------------------------------------------------------------------------------------

    async def _connect(self) -> MessageBus:
        if self._bus is not None and self._bus.connected:
            return self._bus
        try:
            bus = await asyncio.wait_for(MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect(),
                                         CALL_TIMEOUT_SECONDS)
        except (OSError, ValueError, TimeoutError) as exc:
            why = str(exc) or f"no answer within {CALL_TIMEOUT_SECONDS:.0f}s"
            raise CgroupError(f"systemd over D-Bus ({self.bus_address or 'the system bus'}): {why}") from exc
        bus.add_message_handler(self._on_message)
        await self._call_on(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch",
                            "s", [f"type='signal',interface='{MANAGER}',member='JobRemoved'"])
        await self._call_on(bus, SYSTEMD, PATH, MANAGER, "Subscribe", "", [])
        self._bus = bus
        return bus

    def _on_message(self, message: Message) -> None:
        if message.message_type is MessageType.SIGNAL and message.member == "JobRemoved":
            _, job, _, result = message.body
            waiter = self._jobs.pop(job, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
            else:
                self._finished[job] = result
                while len(self._finished) > 256:
                    self._finished.pop(next(iter(self._finished)))

    async def _call_on(self, bus: MessageBus, destination: str, path: str, interface: str, member: str,
                       signature: str, body: list[Any]) -> Message:
        message = Message(destination=destination, path=path, interface=interface, member=member,
                          signature=signature, body=body)
        try:
            reply = await asyncio.wait_for(bus.call(message), CALL_TIMEOUT_SECONDS)
        except TimeoutError:
            raise CgroupError(f"systemd {member}: no reply within {CALL_TIMEOUT_SECONDS:.0f}s") from None
        if reply is None:
            raise CgroupError(f"systemd {member}: no reply")
        if reply.message_type is MessageType.ERROR:
            detail = reply.body[0] if reply.body else ""
            raise CgroupError(f"systemd {member}: {reply.error_name}: {detail}")
        return reply

    async def _manager(self, member: str, signature: str, body: list[Any]) -> Message:
        """A Manager call; once more on a fresh connection if systemd's bus went away meanwhile."""
        for attempt in range(2):
            bus = await self._connect()
            try:
                return await self._call_on(bus, SYSTEMD, PATH, MANAGER, member, signature, body)
            except (OSError, EOFError) as exc:
                self._bus = None
                if attempt:
                    raise CgroupError(f"systemd {member}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _job(self, member: str, signature: str, body: list[Any], unit: str) -> None:
        """Run a call that returns a job, and wait until systemd says the job is done."""
        reply = await self._manager(member, signature, body)
        job = str(reply.body[0])
        result = self._finished.pop(job, None)
        if result is None:
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._jobs[job] = waiter
            try:
                result = await asyncio.wait_for(waiter, JOB_TIMEOUT_SECONDS)
            except TimeoutError:
                raise CgroupError(f"systemd {member} {unit}: the job did not finish within "
                                  f"{JOB_TIMEOUT_SECONDS:.0f}s") from None
            finally:
                self._jobs.pop(job, None)
        if result != "done":
            raise CgroupError(f"systemd {member} {unit}: the job ended '{result}' "
                              f"(journalctl -u {unit} says why)")

    async def _unit_exists(self, unit: str) -> bool:
        try:
            await self._manager("GetUnit", "s", [unit])
        except CgroupError as exc:
            if "NoSuchUnit" in str(exc):
                return False
            raise
        return True

    # -- the CgroupDriver protocol ------------------------------------------------------------------

    async def apply(self, cgroups: Sequence[CgroupPlan]) -> None:
        for cgroup in cgroups:
            unit = unit_name(cgroup.path)
            if unit.endswith(".scope"):
                self._scopes[cgroup.path] = cgroup  # a scope needs its process: it is made in attach()
                continue
            properties = unit_properties(cgroup.resources, self.version)
            async with self._lock:
                if await self._unit_exists(unit):
                    await self._manager("SetUnitProperties", "sba(sv)", [unit, True, properties])
                else:
                    # no Slice= here: systemd refuses it for slice units ("Slice may not be set for
                    # slice units"); a slice's parent is its name's prefix, made implicitly
                    wanted = [("Description", Variant("s", f"nodeagent {cgroup.level} {unit}")),
                              ("DefaultDependencies", Variant("b", False)), *properties]
                    await self._job("StartTransientUnit", "ssa(sv)a(sa(sv))", [unit, "replace", wanted, []], unit)
            await self._write_rest(cgroup)

    async def _write_rest(self, cgroup: CgroupPlan) -> None:
        rest = files_systemd_cannot_set(cgroup.files, self.version)
        if rest:
            await self.files.apply([CgroupPlan(cgroup.level, cgroup.path, rest)])

    async def attach(self, path: str, pid: int) -> None:
        """A container's process: into a new transient scope in its pod's slice; anything else: the file."""
        unit = unit_name(path)
        if not unit.endswith(".scope"):
            await self.files.attach(path, pid)
            return
        plan = self._scopes.pop(path, None)
        if plan is None and await self._unit_exists(unit):
            # another process for a running container (a hook or probe command): join its scope
            await self._manager("AttachProcessesToUnit", "ssau", [unit, "", [pid]])
            return
        properties = [("PIDs", Variant("au", [pid])), ("Delegate", Variant("b", True)),
                      ("Slice", Variant("s", _parent_slice(path) or "-.slice")),
                      ("Description", Variant("s", f"nodeagent container {unit}")),
                      ("DefaultDependencies", Variant("b", False)),
                      *(unit_properties(plan.resources, self.version) if plan else [])]
        await self._job("StartTransientUnit", "ssa(sv)a(sa(sv))", [unit, "replace", properties, []], unit)
        if plan is not None:
            await self._write_rest(plan)

    async def remove(self, paths: Sequence[str]) -> None:
        for path in paths:
            unit = unit_name(path)
            self._scopes.pop(path, None)
            if self.files.exists(path):
                self.files.kill(path)
            try:
                if await self._unit_exists(unit):
                    await self._job("StopUnit", "ss", [unit, "replace"], unit)
            except CgroupError as exc:
                log.debug("stopping %s: %s", unit, exc)
            if self.files.exists(path):
                await self.files.remove([path])  # what systemd left (a stopped slice's leftovers)

    def procs(self, path: str) -> list[int]:
        return self.files.procs(path)

    def exists(self, path: str) -> bool:
        return self.files.exists(path)

    def oom_kills(self, path: str) -> int:
        return self.files.oom_kills(path)

    def usage(self, path: str) -> Usage:
        return self.files.usage(path)

    def children(self, path: str) -> list[str]:
        return self.files.children(path)

    def read(self, path: str, name: str) -> str:
        return self.files.read(path, name)

    def watch_oom(self, path: str, notify: Callable[[], None]) -> oom.OOMWatch:
        return self.files.watch_oom(path, notify)

    def kill(self, path: str) -> None:
        self.files.kill(path)


def _parent_slice(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[-2] if len(parts) >= 2 else None
