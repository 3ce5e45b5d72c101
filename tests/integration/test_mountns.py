"""The process runtime's prepared mount namespaces (nodeagent.runtime.mountns) on the real kernel (root)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from nodeagent.runtime import mountns


def test_a_bind_that_fails_leaves_nothing_and_no_thread_in_another_namespace(tmp_path: Path) -> None:
    before = os.stat("/proc/self/ns/mnt").st_ino
    plan = mountns.MountPlan((mountns.Bind(str(tmp_path / "missing"), str(tmp_path), False),), False)
    with pytest.raises(OSError):
        mountns.make(plan)
    assert os.stat("/proc/self/ns/mnt").st_ino == before
    assert os.stat("/proc/thread-self/ns/mnt").st_ino == before


def test_a_process_joins_the_prepared_namespace_and_sees_its_binds(tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "file").write_text("bound\n")
    (tmp_path / "target").mkdir()
    namespace = mountns.make(mountns.MountPlan(
        (mountns.Bind(str(tmp_path / "source"), str(tmp_path / "target"), True),), False))
    try:
        process = subprocess.Popen(["nsenter", f"--mount={namespace.path}", "--", "sh", "-c",
                                    f'cat {tmp_path}/target/file; touch {tmp_path}/target/x || echo read-only; '
                                    "read -r line"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        asyncio.run(asyncio.wait_for(namespace.close_once_joined(process.pid), 10))
        assert namespace.fd == -1
        output, _ = process.communicate("go\n", timeout=10)
    finally:
        namespace.close()
    assert output.startswith("bound\n") and output.endswith("read-only\n"), output
    assert not (tmp_path / "target" / "file").exists()  # the node's tree never saw the bind


def test_closing_once_joined_ends_when_the_process_is_gone(tmp_path: Path) -> None:
    namespace = mountns.make(mountns.MountPlan((), True))
    gone = subprocess.Popen(["true"])
    gone.wait()
    asyncio.run(asyncio.wait_for(namespace.close_once_joined(gone.pid), 2))
    assert namespace.fd == -1
