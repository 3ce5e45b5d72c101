"""Layer unpacking: what is refused (anything leaving the layer, anything over the budget), what is kept (links,
modes, times), and what takes no disk space (sparse files, zero runs)."""

import gzip
import hashlib
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from nodeagent.images.budget import LayerBudget, PullBudget, UnpackLimits
from nodeagent.images.errors import ImagePullError
from nodeagent.images.unpack import unpack_layer
from tests.integration.images import MTIME, Entry, make_tar

UID, GID = os.getuid(), os.getgid()
_itn: Callable[[int, int, int], bytes] = tarfile.itn  # type: ignore[attr-defined]  # private: not in typeshed


def entry(name: str, kind: str = "file", **fields: object) -> Entry:
    return Entry(name, kind, uid=UID, gid=GID, **fields)  # type: ignore[arg-type]


def unpack(tmp_path: Path, blob: bytes, budget: LayerBudget | None = None) -> tuple[Path, str, int]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "blob").write_bytes(blob)
    root = tmp_path / "layer" / "fs"
    root.mkdir(parents=True)
    budget = budget or PullBudget(UnpackLimits()).layer("sha256:test")
    unpacked = unpack_layer(str(tmp_path / "blob"), str(root), label="sha256:test", budget=budget)
    return root, unpacked.diff_id, unpacked.size_bytes


def disk_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("/etc/passwd", data=b"x")], "refusing '/etc/passwd': absolute path"),
        ([entry("../x", data=b"x")], r"refusing '../x': path outside the layer \(..\)"),
        ([entry("a", "dir"), entry("a/../../x", data=b"x")], "path outside the layer"),
        ([entry("link", "symlink", target="/tmp"), entry("link/evil", data=b"x")],
         "refusing 'link/evil': writes through the symbolic link 'link'"),
        ([entry("up", "symlink", target="../.."), entry("up/x", "dir")], "writes through the symbolic link 'up'"),
        ([entry("h", "hardlink", target="/etc/passwd")], "refusing 'h': hard link to '/etc/passwd': absolute path"),
        ([entry("h", "hardlink", target="../outside")],
         r"refusing 'h': hard link to '../outside': path outside the layer \(..\)"),
        ([entry("h", "hardlink", target="missing")], "hard link to 'missing', which is not in the layer"),
        ([entry("d", "symlink", target="/etc"), entry("h", "hardlink", target="d/passwd")],
         "refusing 'h': writes through the symbolic link 'd'"),
        ([entry("d", "dir"), entry("h", "hardlink", target="d")], "hard link to a directory"),
        ([entry("a", data=b"x"), entry("a/b", data=b"y")], "refusing 'a/b': 'a' is not a directory"),
        ([entry("d", "dir"), entry("d/.wh..", data=b"")], r"refusing 'd/.wh..': whiteout of '.'"),
        ([entry("d", "dir"), entry("d/.wh...", data=b"")], r"refusing 'd/.wh...': whiteout of '..'"),
        ([entry(".wh...", data=b"")], r"refusing '.wh...': whiteout of '..'"),
        ([entry("d", "dir"), entry("d/.wh.", data=b"")], r"refusing 'd/.wh.': whiteout without a name"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "symlink-parent", "symlink-up", "hardlink-absolute",
         "hardlink-dotdot", "hardlink-missing", "hardlink-via-symlink", "hardlink-dir", "file-as-parent",
         "whiteout-dot", "whiteout-dotdot", "whiteout-dotdot-at-root", "whiteout-empty"],
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


def test_a_declared_size_over_the_layer_budget_is_refused_before_writing(tmp_path: Path) -> None:
    tar = make_tar([entry("small", data=b"ok")])[:-1024]  # without the end-of-archive blocks
    header = tarfile.TarInfo("bomb")
    header.size = 64 << 20
    blob = gzip.compress(tar + header.tobuf(tarfile.PAX_FORMAT) + bytes(64 << 20) + bytes(1024))
    assert len(blob) < 128 << 10  # a gzip of zeros: tiny
    budget = PullBudget(UnpackLimits(layer_bytes=16 << 20, pull_bytes=1 << 30)).layer("sha256:test")
    with pytest.raises(ImagePullError, match=r"layer sha256:test: unpacks to more than 16Mi \(the limit set by "
                                             r"nodeagent.imageMaxLayerSize\)"):
        unpack(tmp_path, blob, budget)
    assert not (tmp_path / "layer/fs/bomb").exists()  # refused from its header
    assert (tmp_path / "layer/fs/small").read_bytes() == b"ok"


def test_data_after_the_archive_counts_too(tmp_path: Path) -> None:
    blob = gzip.compress(make_tar([entry("small", data=b"ok")]) + bytes(32 << 20))
    budget = PullBudget(UnpackLimits(layer_bytes=16 << 20, pull_bytes=1 << 30)).layer("sha256:test")
    with pytest.raises(ImagePullError, match="unpacks to more than 16Mi"):
        unpack(tmp_path, blob, budget)


def test_the_pull_budget_is_shared_by_its_layers(tmp_path: Path) -> None:
    pull = PullBudget(UnpackLimits(layer_bytes=8 << 20, pull_bytes=12 << 20))
    blob = gzip.compress(make_tar([entry("f", data=bytes(6 << 20))]))
    unpack(tmp_path / "one", blob, pull.layer("sha256:one"))
    with pytest.raises(ImagePullError, match=r"layer sha256:two: the image's layers unpack to more than 12Mi "
                                             r"\(the limit set by nodeagent.imageMaxPullSize\)"):
        unpack(tmp_path / "two", blob, pull.layer("sha256:two"))


def test_zero_runs_take_no_disk_space(tmp_path: Path) -> None:
    tar = make_tar([entry("data", data=b"head" + bytes(8 << 20) + b"tail")])
    root, _, size = unpack(tmp_path, gzip.compress(tar))
    data = (root / "data").read_bytes()
    assert data == b"head" + bytes(8 << 20) + b"tail"
    assert size == len(data)
    assert disk_bytes(root / "data") <= 2 << 20  # the chunks with data, not the zeros between


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_members_are_written_sparsely(tmp_path: Path, tar_format: str) -> None:
    source = tmp_path / "source"
    source.mkdir()
    with open(source / "sparse", "wb") as handle:
        handle.truncate(1 << 30)
        handle.seek(512 << 20)
        handle.write(b"middle")
        handle.seek((1 << 30) - 3)
        handle.write(b"end")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-C", str(source), "-cf", str(archive), "sparse"],
                   check=True)
    assert archive.stat().st_size < 1 << 20
    budget = PullBudget(UnpackLimits(layer_bytes=1 << 20, pull_bytes=1 << 20)).layer("sha256:test")
    root, _, size = unpack(tmp_path / "out", gzip.compress(archive.read_bytes()), budget)  # 1 GiB apparent: fine
    unpacked = root / "sparse"
    assert unpacked.stat().st_size == 1 << 30
    assert disk_bytes(unpacked) <= 1 << 20 and size <= 16 << 10
    with open(unpacked, "rb") as handle:
        handle.seek(512 << 20)
        assert handle.read(6) == b"middle"
        handle.seek((1 << 30) - 3)
        assert handle.read() == b"end"


def gnu_sparse(regions: list[tuple[int, int]], real_size: int) -> bytes:
    """A tar with one old-GNU sparse member ('S'), its map written by hand: what a hostile layer can say."""
    data = b"".join(bytes([65 + n]) * count for n, (_, count) in enumerate(regions))
    member = tarfile.TarInfo("sparse")
    member.type, member.size, member.uid, member.gid = tarfile.GNUTYPE_SPARSE, len(data), UID, GID
    header = bytearray(member.tobuf(tarfile.GNU_FORMAT))
    for n, (offset, count) in enumerate(regions):
        header[386 + 24 * n: 398 + 24 * n] = _itn(offset, 12, tarfile.GNU_FORMAT)
        header[398 + 24 * n: 410 + 24 * n] = _itn(count, 12, tarfile.GNU_FORMAT)
    header[483:495] = _itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return bytes(header) + data + bytes(-len(data) % 512) + bytes(1024)


def test_a_hand_made_sparse_member_is_written_where_its_map_says(tmp_path: Path) -> None:
    root, _, size = unpack(tmp_path, gnu_sparse([(4096, 3), (1 << 20, 2)], (1 << 20) + 4096))
    data = (root / "sparse").read_bytes()
    assert len(data) == (1 << 20) + 4096 and size == 5
    assert data[4096:4099] == b"AAA" and data[1 << 20: (1 << 20) + 2] == b"BB" and data.count(0) == len(data) - 5


@pytest.mark.parametrize(
    ("regions", "real_size", "message"),
    [([(100, 10)], 50, "refusing 'sparse': sparse map outside the file"),
     ([(0, 5)], 1 << 80, "layer sha256:test: ")],  # no file system has that size
    ids=["outside", "huge"],
)
def test_a_hostile_sparse_map_is_a_pull_error(tmp_path: Path, regions: list[tuple[int, int]], real_size: int,
                                              message: str) -> None:
    with pytest.raises(ImagePullError, match=message):
        unpack(tmp_path, gnu_sparse(regions, real_size))
