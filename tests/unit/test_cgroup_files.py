"""nodeagent.cgroups.files: reading a cgroup that goes away."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nodeagent.cgroups import files
from nodeagent.errors import CgroupError


def test_the_processes_of_a_cgroup_removed_while_read_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by chaos (a container cgroup removed from outside): cgroup.procs of a cgroup removed after it
    was opened reads ENODEV; that OSError escaped the agent's clean-up after an exit and ended the pod's
    supervision silently (the container stayed Terminated, never restarted)."""
    def removed(*_: object, **__: object) -> None:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr("builtins.open", removed)
    assert files.read_procs("/sys/fs/cgroup/pids/gone") == []


def test_the_processes_of_a_missing_cgroup_are_none_and_other_errors_are_cgroup_errors(tmp_path: Path) -> None:
    assert files.read_procs(str(tmp_path / "missing")) == []
    (tmp_path / "cgroup.procs").mkdir()  # reading a directory: EISDIR
    with pytest.raises(CgroupError, match=r"cgroup\.procs"):
        files.read_procs(str(tmp_path))
