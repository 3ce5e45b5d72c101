"""The chaos pods' liveness probe (tests.chaos.world.PROBE) runs no process but its own shell: the sampler tells
a probe's session from a container instance by its leader's command line, and a probe killed with its
container (or cut short by an agent stopping) left its `cat` or `grep` alive a moment after its leader, which the
sampler, seeing the session first then, counted as a second instance (runc soak, seed 11: 1 sample, twice)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.chaos import sampler
from tests.chaos.world import PROBE
from tests.integration.harness import wait_for

SHELLS = [["/bin/sh"], ["/usr/bin/busybox", "sh"]]  # the process runtime's, the images' (busybox)


def probe(shell: list[str], target: Path) -> int:
    """The probe's exit code with no PATH at all: any command it ran besides shell builtins would fail."""
    done = subprocess.run([*shell, "-c", PROBE, "chaos-probe"], env={"PATH": "/nonexistent", "CHAOS_TARGET": str(target)},
                          capture_output=True, timeout=10, check=False)
    return done.returncode


@pytest.mark.parametrize("shell", SHELLS, ids=["sh", "busybox"])
def test_the_probe_needs_no_command_but_the_shell(shell: list[str], tmp_path: Path) -> None:
    if not Path(shell[0]).exists():
        pytest.skip(f"{shell[0]} is not installed")
    target = tmp_path / "target"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        target.write_text(f"{sleeper.pid}\n")
        assert probe(shell, target) == 0  # its target lives
        sleeper.send_signal(19)  # SIGSTOP: state T, once the sleeper has taken the signal (a loaded CI was slower)
        wait_for(lambda: Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T",
                 what="the sleeper stopped")
        assert probe(shell, target) == 1
        sleeper.send_signal(18)
        sleeper.kill()
        sleeper.wait()
        assert probe(shell, target) == 1  # gone
        assert probe(shell, tmp_path / "none") == 1  # no target yet
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_probe_leader_ending_between_the_samplers_reads_is_no_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its environment read while it lived, its command line empty a moment later (its memory released on its way
    out): the sampler took such a probe's session for a second instance of its container (CI, process runtime)."""
    files = {"/proc/10/environ": b"CHAOS_RUN=r\0CHAOS_ID=pod/main\0CHAOS_UID=u1\0", "/proc/10/cmdline": b"sleep\0",
             "/proc/20/environ": b"CHAOS_RUN=r\0CHAOS_ID=pod/main\0CHAOS_UID=u1\0", "/proc/20/cmdline": b""}
    monkeypatch.setattr(sampler, "_read", files.get)
    monkeypatch.setattr(sampler, "_stat", lambda pid: (pid, pid * 100, "sleep" if pid == 10 else "sh"))
    watcher = sampler.Sampler("r", "/nonexistent")
    monkeypatch.setattr(watcher, "_pids", lambda: {10, 20})
    assert [i.sid for i in watcher.instances()] == [10]
    assert watcher.overlaps == []
