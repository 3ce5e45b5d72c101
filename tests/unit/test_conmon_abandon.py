"""nodeagent.runtime.conmon.abandon: a start cut short leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from nodeagent.runtime import conmon


def test_a_launcher_whose_pid_file_was_never_written_is_killed(tmp_path: Path) -> None:
    """Found by chaos (the agent stopped during a start): conmon was killed while its OCI runtime had
    started the launcher but not yet written its pid file; the launcher, waiting on the bundle's FIFO,
    was found by nobody and waited for ever, outside every cgroup of the agent."""
    layout = conmon.ConmonLayout(str(tmp_path))
    container_id = "f" * 64
    bundle = Path(layout.bundle(container_id))
    bundle.mkdir(parents=True)
    os.mkfifo(bundle / "start")
    (bundle / "run").write_text(f"read -r go < {bundle / 'start'}\n")
    launcher = subprocess.Popen(["setsid", "/bin/sh", str(bundle / "run")])  # no pid file, as in the race
    try:
        time.sleep(0.2)
        conmon.abandon(layout, container_id)
        assert launcher.wait(timeout=5) != 0
        assert not bundle.exists()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
