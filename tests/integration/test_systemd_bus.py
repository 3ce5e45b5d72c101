"""The systemd driver's D-Bus conversation, on a real dbus-daemon that the test starts.

This machine has no systemd as PID 1: a stand-in owns org.freedesktop.systemd1 on a private bus and answers
the Manager calls the driver makes, so what is checked here is the messages (names, signatures, properties),
the job protocol (JobRemoved) and the failure paths (no systemd, a failed job, a systemd that never
answers). The driver against the real systemd, its values in the kernel, is the VM suite's
(tests/vm/guest).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from nodeagent.cgroups import systemd
from nodeagent.cgroups.systemd import MANAGER, PATH, SYSTEMD, SystemdDriver
from nodeagent.errors import CgroupError
from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import ResourceConfig
from tests.integration.harness import cgroup_driver

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
SLICE = "/nodeagent_test.slice/nodeagent_test-kubepods.slice"


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("needs dbus-daemon (apt-get install dbus)")
    socket = tmp_path / "bus"
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket))
    process = subprocess.Popen([daemon, "--nofork", f"--config-file={config}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if socket.exists():
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else b""
            subprocess.run(["sleep", "0.01"], check=True)
        yield f"unix:path={socket}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class StandIn:
    """Owns org.freedesktop.systemd1 and answers as systemd does: units unknown until started, a job per
    start or stop whose JobRemoved follows the reply; or, `silent`, never answers."""

    def __init__(self, bus: MessageBus, *, job_result: str = "done", silent: bool = False) -> None:
        self.bus = bus
        self.job_result = job_result
        self.silent = silent
        self.calls: list[tuple[str, list[Any]]] = []
        self.units: set[str] = set()
        bus.add_message_handler(self.handle)

    def handle(self, message: Message) -> Message | bool | None:
        if message.message_type is not MessageType.METHOD_CALL or message.interface != MANAGER:
            return None
        assert message.member is not None  # a method call names its method
        self.calls.append((message.member, message.body))
        if self.silent:
            return True
        if message.member == "Subscribe":
            return Message.new_method_return(message)
        unit = message.body[0] if message.body else ""
        if message.member == "GetUnit":
            if unit in self.units:
                return Message.new_method_return(message, "o", [f"{PATH}/unit/{len(self.units)}"])
            return Message.new_error(message, "org.freedesktop.systemd1.NoSuchUnit", f"Unit {unit} not loaded.")
        if message.member in ("StartTransientUnit", "StopUnit"):
            job_id = len(self.calls)
            job = f"{PATH}/job/{job_id}"
            if message.member == "StartTransientUnit" and self.job_result == "done":
                self.units.add(unit)
            removed = Message.new_signal(PATH, MANAGER, "JobRemoved", "uoss", [job_id, job, unit, self.job_result])
            asyncio.get_running_loop().call_soon(self.bus.send, removed)  # after the reply, as systemd
            return Message.new_method_return(message, "o", [job])
        if message.member == "SetUnitProperties":
            return Message.new_method_return(message)
        return Message.new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", message.member)

    def members(self) -> list[str]:
        return [member for member, _ in self.calls]


@pytest.fixture
async def stand_in_bus(bus_address: str) -> AsyncIterator[MessageBus]:
    bus = await MessageBus(bus_address=bus_address).connect()
    await bus.request_name(SYSTEMD)
    try:
        yield bus
    finally:
        bus.disconnect()


def driver(bus_address: str) -> SystemdDriver:
    return SystemdDriver(cgroup_driver().hierarchy, bus_address=bus_address)


def slice_plan() -> CgroupPlan:
    # no files: the driver would write what systemd cannot set to the (here nonexistent) unit cgroup
    return CgroupPlan("node", SLICE, {}, resources=ResourceConfig(cpu_shares=2048, memory_bytes=1 << 30))


async def test_a_slice_is_started_with_the_plan_s_values_then_updated(bus_address: str,
                                                                      stand_in_bus: MessageBus) -> None:
    stand_in = StandIn(stand_in_bus)
    cgroups = driver(bus_address)
    await cgroups.apply([slice_plan()])
    assert stand_in.members() == ["Subscribe", "GetUnit", "StartTransientUnit"]
    unit, mode, properties, auxiliary = stand_in.calls[-1][1]
    assert (unit, mode, auxiliary) == ("nodeagent_test-kubepods.slice", "replace", [])
    values = {name: variant.value for name, variant in properties}
    memory = "MemoryMax" if cgroups.version == 2 else "MemoryLimit"
    assert values[memory] == 1 << 30
    assert values["DefaultDependencies"] is False
    assert "Slice" not in values  # systemd refuses Slice= for a slice: its parent is in its name
    await cgroups.apply([slice_plan()])  # it exists now: its properties are set, nothing is started
    assert stand_in.members()[3:] == ["GetUnit", "SetUnitProperties"]
    unit, runtime, properties = stand_in.calls[-1][1]
    assert (unit, runtime) == ("nodeagent_test-kubepods.slice", True)


async def test_a_failed_job_is_an_error_that_names_the_unit(bus_address: str, stand_in_bus: MessageBus) -> None:
    StandIn(stand_in_bus, job_result="failed")
    with pytest.raises(CgroupError, match=r"StartTransientUnit nodeagent_test-kubepods.slice: the job ended 'failed'"):
        await driver(bus_address).apply([slice_plan()])


async def test_a_systemd_that_never_answers_is_an_error_not_a_hang(bus_address: str, stand_in_bus: MessageBus,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    StandIn(stand_in_bus, silent=True)
    monkeypatch.setattr(systemd, "CALL_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(CgroupError, match=r"systemd Subscribe: no reply within"):
        await asyncio.wait_for(driver(bus_address).apply([slice_plan()]), 10)


async def test_no_systemd_on_the_bus_is_reported_in_d_bus_words(bus_address: str) -> None:
    with pytest.raises(CgroupError, match=r"ServiceUnknown"):
        await driver(bus_address).apply([slice_plan()])
