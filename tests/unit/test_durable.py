"""write_atomically: whole files, and no rewrite (no fsync) when the file already holds the bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.durable import write_atomically


def test_a_file_is_written_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "d" / "state.json"
    write_atomically(str(path), b"one")
    assert path.read_bytes() == b"one"
    assert path.stat().st_mode & 0o777 == 0o600
    write_atomically(str(path), b"two", mode=0o644)
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_the_same_bytes_are_not_written_again(tmp_path: Path) -> None:
    """A restart re-adopting 100 pods saved each one's unchanged state: 100 fsyncs for nothing."""
    path = tmp_path / "state.json"
    write_atomically(str(path), b"same")
    inode = path.stat().st_ino
    write_atomically(str(path), b"same")
    assert path.stat().st_ino == inode  # left alone, not replaced
    write_atomically(str(path), b"same", mode=0o644)  # a new mode is a change
    assert path.stat().st_ino != inode
    assert path.stat().st_mode & 0o777 == 0o644
    inode = path.stat().st_ino
    write_atomically(str(path), b"samf", mode=0o644)
    assert (path.read_bytes(), path.stat().st_ino != inode) == (b"samf", True)


def test_a_symlink_in_the_way_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"same")
    os.chmod(target, 0o600)
    path = tmp_path / "state.json"
    path.symlink_to(target)
    write_atomically(str(path), b"same")
    assert not path.is_symlink() and path.read_bytes() == b"same"


def test_without_sync_the_file_is_whole_and_nothing_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    path = tmp_path / "lease.json"
    write_atomically(str(path), b"leased", sync=False)
    assert (path.read_bytes(), synced) == (b"leased", [])
    write_atomically(str(path), b"durable")
    assert path.read_bytes() == b"durable" and len(synced) == 2  # the file, then its directory
