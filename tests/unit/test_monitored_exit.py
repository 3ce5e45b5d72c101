"""MonitoredContainer.wait() for a container it never watched (a start cut short before the watch): conmon
writes the exit file as it ends, so the agent waits for conmon before reading and removing it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
from pathlib import Path

from nodeagent.plan.pod import CgroupPlan
from nodeagent.runtime import conmon
from nodeagent.runtime.monitored import MonitoredContainer, now
from nodeagent.runtime.procinfo import ProcessIdentity
from tests.integration.harness import cgroup_driver
from tests.unit.test_security import SPEC

CONTAINER_ID = "cd" * 32


async def test_a_never_watched_containers_exit_file_is_read_once_conmon_has_written_it(tmp_path: Path) -> None:
    """Found by a chaos soak (21 exit files left in <stateDir>/exits): a start cut short before the watch
    (its cgroup gone, the agent stopping) killed the container and removed its files at once, while conmon
    still lived; conmon then wrote the exit file nobody would ever read, and the exit code was lost."""
    layout = conmon.ConmonLayout(str(tmp_path))
    Path(layout.bundle(CONTAINER_ID)).mkdir(parents=True)
    Path(layout.exit_dir).mkdir()
    # conmon's part, as it plays out: its container ends, then it writes the exit file and exits
    stand_in = subprocess.Popen(["sh", "-c", f"sleep 0.5; echo 3 > {layout.exit_file(CONTAINER_ID)}"])
    container = subprocess.Popen(["sleep", "60"])
    try:
        spec = dataclasses.replace(SPEC, cgroup=CgroupPlan("container", f"/nodeagent-none-{secrets.token_hex(4)}"))
        monitored = conmon.Monitored(CONTAINER_ID, ProcessIdentity.of(stand_in.pid), ProcessIdentity.of(container.pid))
        running = MonitoredContainer(spec, monitored, now(),
                                     cgroups=cgroup_driver(), layout=layout, kernel_log=None, prefix="")
        ended = await asyncio.wait_for(running.wait(), 10)
        await asyncio.to_thread(stand_in.wait, 5)
        assert (ended.exit_code, ended.unknown) == (3, False)
        assert os.listdir(layout.exit_dir) == []
        assert not Path(layout.bundle(CONTAINER_ID)).exists()
    finally:
        for process in (stand_in, container):
            process.kill()
            process.wait()

