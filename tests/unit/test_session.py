"""An interactive command's gate: the command waits, outside its container's cgroup for no instruction, until the
agent has moved it there."""

from __future__ import annotations

import asyncio
import os
import signal

from nodeagent.runtime.session import ExecCommand, start_session


async def test_a_command_slow_to_reach_its_gate_still_passes_it() -> None:
    """CI (kubectl exec on the process runtime, a loaded machine): the agent closed its end of the gate as soon as
    it had written "go", and a shell that had not opened the gate's path by then failed with "cannot open
    /proc/<agent>/fd/N" (125). The shell is held stopped until the session has started (ten times: a shell
    quick enough opens the path before it is stopped)."""
    stopped: list[int] = []

    async def into_cgroup(pid: int) -> None:  # as a cgroup move does: the shell is not past its gate yet
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    for _ in range(10):
        session = await start_session(ExecCommand(("echo", "through"), cgroup=into_cgroup), stdin=False, tty=False)
        try:
            await asyncio.sleep(0.02)
            os.kill(stopped[-1], signal.SIGCONT)
            output, code = await asyncio.gather(session.stdout.read(), session.wait())
        finally:
            session.close()
        assert (code, output) == (0, b"through\n")
