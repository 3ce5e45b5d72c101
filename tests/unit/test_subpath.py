"""The safe walk under a volume (nodeagent.agent.subpath), without mounting: what it opens, makes, refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nodeagent.agent.subpath import SubPathError, _make_dirs, _open_under, _unescape


def opened(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_a_path_inside_is_opened_component_by_component(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert opened(_open_under(str(tmp_path), str(tmp_path / "a" / "b"))) == str(tmp_path / "a" / "b")
    assert opened(_open_under(str(tmp_path), str(tmp_path))) == str(tmp_path)


def test_a_symlink_met_while_opening_is_refused_even_if_it_stays_inside(tmp_path: Path) -> None:
    """What a swap between the resolution and the open looks like: a link where a directory was."""
    (tmp_path / "real").mkdir()
    (tmp_path / "swapped").symlink_to("/")
    with pytest.raises(SubPathError, match=r"unexpected symlink found .*/swapped$"):
        _open_under(str(tmp_path), str(tmp_path / "swapped"))
    (tmp_path / "real" / "inner").symlink_to(tmp_path / "real")
    with pytest.raises(SubPathError, match=r"unexpected symlink found .*/inner$"):
        _open_under(str(tmp_path), str(tmp_path / "real" / "inner" / "x"))


def test_missing_directories_are_made_with_the_volumes_mode(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    _make_dirs(str(tmp_path), str(tmp_path / "x" / "y"), 0o777)
    assert stat.S_IMODE((tmp_path / "x" / "y").stat().st_mode) == 0o777
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o777


def test_making_through_a_link_out_of_the_volume_is_refused(tmp_path: Path) -> None:
    volume, outside = tmp_path / "volume", tmp_path / "outside"
    volume.mkdir()
    outside.mkdir()
    (volume / "escape").symlink_to(outside)
    with pytest.raises(SubPathError, match="is outside of allowed base") as refused:
        _make_dirs(str(volume), str(volume / "escape" / "new"), 0o755)
    assert refused.value.making
    assert list(outside.iterdir()) == []


def test_making_through_a_link_inside_the_volume_follows_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    _make_dirs(str(tmp_path), str(tmp_path / "link" / "new"), 0o755)
    assert (tmp_path / "real" / "new").is_dir()


def test_a_file_in_the_way_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SubPathError, match="Not a directory"):
        _make_dirs(str(tmp_path), str(tmp_path / "file" / "new"), 0o755)


def test_mountinfo_escapes() -> None:
    assert _unescape(rb"/a\040b\011c\134d") == "/a b\tc\\d"
