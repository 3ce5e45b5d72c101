"""conmon.abandon: what a cut-short start left is killed, by its pid files, and only if it is that start's."""

import subprocess
import sys
from pathlib import Path

from nodeagent.runtime import conmon
from nodeagent.runtime.base import AdoptionRecord
from nodeagent.runtime.procinfo import ProcessIdentity

CONTAINER_ID = "ab" * 32


def waiting(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])


def test_abandon_kills_the_starts_processes_and_spares_a_reused_pid(tmp_path: Path) -> None:
    layout = conmon.ConmonLayout(str(tmp_path))
    bundle = Path(layout.bundle(CONTAINER_ID))
    bundle.mkdir(parents=True)
    launcher = waiting(f"{bundle}/run")  # names the container in its command line, as the launcher does
    stranger = waiting("unrelated")  # a pid file's pid that now belongs to someone else
    try:
        (bundle / "pidfile").write_text(str(launcher.pid))
        (bundle / "conmon.pid").write_text(str(stranger.pid))
        conmon.abandon(layout, CONTAINER_ID)
        assert launcher.wait(timeout=5) == -9
        assert stranger.poll() is None
        assert not bundle.exists()
    finally:
        for process in (launcher, stranger):
            process.kill()
            process.wait()


def test_discard_kills_the_saved_container_and_ignores_what_names_no_container(tmp_path: Path) -> None:
    layout = conmon.ConmonLayout(str(tmp_path))
    bundle = Path(layout.bundle(CONTAINER_ID))
    bundle.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    container = waiting("a container's command line names no bundle")
    try:
        details = {"container": ProcessIdentity.of(container.pid).to_json()}
        saved = AdoptionRecord(CONTAINER_ID, True, details)
        assert conmon.discard(layout, AdoptionRecord("../outside", True, details)) is None
        assert conmon.discard(layout, AdoptionRecord(CONTAINER_ID, False, details)) is None  # cri's: no bundle
        assert outside.exists() and container.poll() is None
        assert conmon.discard(layout, saved) == CONTAINER_ID
        assert container.wait(timeout=5) == -9
        assert not bundle.exists()
    finally:
        container.kill()
        container.wait()
