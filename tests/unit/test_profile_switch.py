"""NODEAGENT_PROFILE: SIGUSR1 profiles the event loop until the next SIGUSR1, which writes the pstats file."""

from __future__ import annotations

import asyncio
import os
import pstats
import signal
from pathlib import Path

from nodeagent.daemon import profile_on_sigusr1


async def busy() -> int:
    return sum(range(10_000))


async def test_two_signals_write_a_profile_of_what_ran_between(tmp_path: Path) -> None:
    path = tmp_path / "loop.prof"
    profile_on_sigusr1(str(path))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.05)
        await busy()
        assert not path.exists()
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.05)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
    functions = {name for _, _, name in pstats.Stats(str(path)).stats}  # type: ignore[attr-defined]
    assert "busy" in functions
