"""Hostile layers, written entry by entry with tarfile (what tests/integration/images.Entry cannot say: FIFOs,
devices with numbers, declared sizes without the bytes, GNU sparse members), and pushed as images."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from tests.integration.images import MTIME, Layer


def info(name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, mode: int = 0o644, linkname: str = "",
         device: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
    made = tarfile.TarInfo(name)
    made.type, made.size, made.mode, made.mtime, made.linkname = kind, size, mode, MTIME, linkname
    made.devmajor, made.devminor = device
    return made


def tar_of(members: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members:
            archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def layer_of(tar: bytes) -> Layer:
    return Layer(tar, gzip.compress(tar, mtime=0))


def zero_bomb(name: str, size: int) -> Layer:
    """One file of `size` zero bytes: its gzip is about a thousandth of that."""
    return layer_of(tar_of([(info(name, size=size), bytes(size))]))


def sparse_layer(directory: Path, name: str, size: int, data_at: int, data: bytes) -> Layer:
    """A GNU sparse member made by GNU tar from a file with one data block in `size` bytes of holes."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "wb") as handle:
        handle.truncate(size)
        handle.seek(data_at)
        handle.write(data)
    archive = directory.with_suffix(".tar")
    subprocess.run(["tar", "--sparse", "--format=gnu", "--owner=0", "--group=0", "-C", str(directory), "-cf",
                    str(archive), name], check=True)
    return layer_of(archive.read_bytes())
