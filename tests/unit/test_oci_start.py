"""OCIRuntime.start with runc: runc's exec FIFO released by the agent itself, as `runc start` does it (real
FIFOs and processes standing in for runc's init)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from nodeagent.runtime.oci_runtime import EXEC_FIFO, OCIRuntime, OCIRuntimeError
from nodeagent.runtime.procinfo import ProcessIdentity

ID = "c" * 64


def created(root: Path, init_script: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A container as `runc create` leaves it: its exec FIFO, and an init that opens it for writing (which
    waits for a reader), writes its byte and goes on as `init_script` says."""
    (root / ID).mkdir()
    fifo = root / ID / EXEC_FIFO
    os.mkfifo(fifo, 0o622)
    init = subprocess.Popen(["sh", "-c", init_script, "init", str(fifo)])
    return init, fifo


def test_the_init_runs_once_its_byte_is_read_and_the_fifo_is_gone(tmp_path: Path) -> None:
    init, fifo = created(tmp_path, 'printf 0 > "$1" && exec sleep 30')
    try:
        runtime = OCIRuntime("/nonexistent/runc", (), exec_fifos=str(tmp_path))
        asyncio.run(runtime.start(ID, ProcessIdentity.of(init.pid)))
        assert not fifo.exists()  # runc now reports the container running
        assert init.poll() is None
    finally:
        init.kill()
        init.wait()


def test_an_init_that_ends_before_writing_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    init, _ = created(tmp_path, "sleep 0.2; exit 1")
    try:
        runtime = OCIRuntime("/nonexistent/runc", (), exec_fifos=str(tmp_path))
        with pytest.raises(OCIRuntimeError, match="ended before it was started"):
            asyncio.run(runtime.start(ID, ProcessIdentity.of(init.pid), timeout=10))
    finally:
        init.kill()
        init.wait()


def test_an_init_that_never_writes_times_out(tmp_path: Path) -> None:
    init, _ = created(tmp_path, "exec sleep 30")
    try:
        runtime = OCIRuntime("/nonexistent/runc", (), exec_fifos=str(tmp_path))
        with pytest.raises(OCIRuntimeError, match=r"did not start within 0\.2s"):
            asyncio.run(runtime.start(ID, ProcessIdentity.of(init.pid), timeout=0.2))
    finally:
        init.kill()
        init.wait()


def test_without_the_fifo_the_runtime_s_own_start_runs(tmp_path: Path) -> None:
    """A runc that keeps no exec FIFO there (or crun, which has no exec_fifos): `<runtime> start <id>`."""
    said = tmp_path / "said"
    runtime_binary = tmp_path / "fake-runtime"
    runtime_binary.write_text(f'#!/bin/sh\necho "$@" > {said}\n')
    runtime_binary.chmod(0o755)
    init = subprocess.Popen(["sleep", "30"])
    try:
        runtime = OCIRuntime(str(runtime_binary), ("--root", str(tmp_path)), exec_fifos=str(tmp_path))
        asyncio.run(runtime.start(ID, ProcessIdentity.of(init.pid)))
        assert said.read_text().split() == ["--root", str(tmp_path), "start", ID]
    finally:
        init.kill()
        init.wait()
