"""Layer unpacking: what is refused (anything leaving the layer), and what is kept (links, modes, times)."""

import gzip
import hashlib
import os
import stat
from pathlib import Path

import pytest
import zstandard

from nodeagent.images.errors import ImagePullError
from nodeagent.images.unpack import unpack_layer
from tests.integration.images import MTIME, Entry, make_tar

UID, GID = os.getuid(), os.getgid()


def entry(name: str, kind: str = "file", **fields: object) -> Entry:
    return Entry(name, kind, uid=UID, gid=GID, **fields)  # type: ignore[arg-type]


def unpack(tmp_path: Path, blob: bytes) -> tuple[Path, str, int]:
    (tmp_path / "blob").write_bytes(blob)
    root = tmp_path / "layer" / "fs"
    root.mkdir(parents=True)
    unpacked = unpack_layer(str(tmp_path / "blob"), str(root), label="sha256:test")
    return root, unpacked.diff_id, unpacked.size_bytes


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("/etc/passwd", data=b"x")], "refusing '/etc/passwd': absolute path"),
        ([entry("../x", data=b"x")], r"refusing '../x': path outside the layer \(..\)"),
        ([entry("a", "dir"), entry("a/../../x", data=b"x")], "path outside the layer"),
        ([entry("link", "symlink", target="/tmp"), entry("link/evil", data=b"x")],
         "refusing 'link/evil': writes through the symbolic link 'link'"),
        ([entry("up", "symlink", target="../.."), entry("up/x", "dir")], "writes through the symbolic link 'up'"),
        ([entry("h", "hardlink", target="/etc/passwd")], "refusing '/etc/passwd': absolute path"),
        ([entry("h", "hardlink", target="../outside")], "path outside the layer"),
        ([entry("h", "hardlink", target="missing")], "hard link to 'missing', which is not in the layer"),
        ([entry("d", "symlink", target="/etc"), entry("h", "hardlink", target="d/passwd")],
         "refusing 'h': writes through the symbolic link 'd'"),
        ([entry("d", "dir"), entry("h", "hardlink", target="d")], "hard link to a directory"),
        ([entry("a", data=b"x"), entry("a/b", data=b"y")], "refusing 'a/b': 'a' is not a directory"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "symlink-parent", "symlink-up", "hardlink-absolute",
         "hardlink-dotdot", "hardlink-missing", "hardlink-via-symlink", "hardlink-dir", "file-as-parent"],
)
def test_refused(tmp_path: Path, entries: list[Entry], message: str) -> None:
    with pytest.raises(ImagePullError, match=message):
        unpack(tmp_path, gzip.compress(make_tar(entries)))
    assert sorted(os.listdir(tmp_path)) == ["blob", "layer"]  # nothing written outside the layer


def test_links_modes_and_times_kept(tmp_path: Path) -> None:
    tar = make_tar([
        entry("./bin/", "dir", mode=0o755), entry("./bin/busybox", data=b"\x7fELF...", mode=0o4755),
        entry("bin/sh", "symlink", target="/bin/busybox"), entry("bin/ln", "hardlink", target="bin/busybox"),
        entry("etc", "dir", mode=0o700), entry("etc/motd", data=b"old"), entry("etc/motd", data=b"new", mode=0o600),
        entry("tmp", "dir", mode=0o1777), entry("deep/er/file", data=b"implicit parents"),
        entry("attrs", data=b"", xattrs={"user.note": "kept"}),
    ])
    root, diff_id, size = unpack(tmp_path, gzip.compress(tar))
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert size == len(b"\x7fELF...") + 3 + 3 + len(b"implicit parents")
    assert os.readlink(root / "bin/sh") == "/bin/busybox"  # kept as is: resolved inside the container
    busybox = (root / "bin/busybox").lstat()
    assert stat.S_IMODE(busybox.st_mode) == 0o4755 and busybox.st_nlink == 2
    assert (root / "bin/ln").lstat().st_ino == busybox.st_ino
    assert (root / "etc/motd").read_bytes() == b"new" and stat.S_IMODE((root / "etc/motd").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o700
    assert (root / "deep/er/file").read_bytes() == b"implicit parents"
    assert (root / "bin").stat().st_mtime == MTIME and busybox.st_mtime == MTIME
    assert (root / "bin/sh").lstat().st_mtime == MTIME
    assert os.getxattr(root / "attrs", "user.note") == b"kept"


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_compression_found_from_the_content(tmp_path: Path, compression: str) -> None:
    tar = make_tar([entry("hello", data=b"world")])
    blob = {"none": tar, "gzip": gzip.compress(tar), "zstd": zstandard.ZstdCompressor().compress(tar)}[compression]
    root, diff_id, _ = unpack(tmp_path, blob)
    assert (root / "hello").read_bytes() == b"world"
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_a_corrupt_stream_is_an_error(tmp_path: Path) -> None:
    blob = gzip.compress(make_tar([entry("hello", data=b"world" * 1000)]))
    with pytest.raises(ImagePullError, match="layer sha256:test: not a valid tar stream"):
        unpack(tmp_path, blob[: len(blob) // 2])
