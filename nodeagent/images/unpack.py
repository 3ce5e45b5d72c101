"""Unpack one layer blob (tar, gzip or zstd) into a directory that overlayfs can use as a lower layer.

Blocking: run it with asyncio.to_thread. The compression is found from the blob's first bytes (the
media type only names it). The uncompressed stream is hashed on the way and must match the config's
diff_id. Entries keep their owner, mode, mtime and `SCHILY.xattr.*` attributes, as root extracts them.

OCI whiteouts become what overlayfs reads: `.wh.<name>` a character device 0:0 named `<name>`, and
`.wh..wh..opq` the `trusted.overlay.opaque=y` attribute on its directory. Refused, with the layer
unusable: absolute names, `..`, writing through a symbolic link (`link -> /etc` then `link/passwd`),
hard links to anything outside the layer, and whiteouts of `.` or `..`. Symbolic links are kept as
they are: they are resolved inside the container's root, never while unpacking.

The uncompressed stream counts against a LayerBudget: each entry's declared end before it is written,
and every byte read (trailing data too). Files are written sparsely: the holes of tar sparse members
(GNU and PAX formats) and runs of zeros in any file take no disk space.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Protocol, cast

from nodeagent.images.budget import LayerBudget
from nodeagent.images.errors import ImagePullError

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COPY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class UnpackedLayer:
    diff_id: str  # sha256 of the uncompressed tar
    size_bytes: int  # the regular files' contents


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Member(_Readable, Protocol):
    def seek(self, offset: int, /) -> int: ...


class _HashingReader:
    """A read-only stream that hashes what passes through it, and counts it against the budget."""

    def __init__(self, raw: _Readable, budget: LayerBudget) -> None:
        self._raw = raw
        self._budget = budget
        self._count = 0
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(_COPY_BYTES if size < 0 else min(size, _COPY_BYTES))
        self._count += len(data)
        self._budget.reach(self._count)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(_COPY_BYTES):
            pass


def unpack_layer(blob_path: str, destination: str, *, label: str, budget: LayerBudget) -> UnpackedLayer:
    """Unpack the blob at `blob_path` into the empty directory `destination`; `label` names the layer in
    errors. Raises ImagePullError for a corrupt, refused or over-budget layer (the caller removes
    `destination`)."""
    with open(blob_path, "rb") as blob, _decompressed(blob, label) as stream:
        reader = _HashingReader(stream, budget)
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as archive:  # type: ignore[call-overload]
                size = _Extractor(destination, label, budget).run(archive)
            reader.drain()
        except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as exc:
            if isinstance(exc, OSError) and exc.filename:
                raise ImagePullError(f"layer {label}: {exc.strerror or exc}: {exc.filename}") from None
            raise ImagePullError(f"layer {label}: not a valid tar stream: {exc}") from None
    return UnpackedLayer("sha256:" + reader.hasher.hexdigest(), size)


def diff_id_of(blob_path: str, *, label: str, budget: LayerBudget) -> str:
    """The sha256 of the blob's uncompressed content (its diff_id), without unpacking it; a blob that
    decompresses past the budget is refused as its unpacking would be."""
    with open(blob_path, "rb") as blob, _decompressed(blob, label) as stream:
        reader = _HashingReader(stream, budget)
        try:
            reader.drain()
        except (EOFError, OSError, ValueError) as exc:
            raise ImagePullError(f"layer {label}: cannot decompress: {exc}") from None
    return "sha256:" + reader.hasher.hexdigest()


@contextmanager
def _decompressed(blob: IO[bytes], label: str) -> Iterator[_Readable]:
    magic = blob.read(4)
    blob.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        with gzip.GzipFile(fileobj=blob, mode="rb") as stream:
            yield stream
    elif magic.startswith(_ZSTD_MAGIC):
        try:
            import zstandard  # only zstd layers need it; keeps the agent's start fast
        except ImportError:
            raise ImagePullError(f"layer {label}: zstd-compressed, without the zstandard package") from None
        with zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True) as stream:
            yield stream
    else:
        yield blob


class _Extractor:
    """Creates each entry of one tar stream below `root`, never following a symbolic link."""

    def __init__(self, root: str, label: str, budget: LayerBudget) -> None:
        self.root = root
        self.label = label
        self.budget = budget
        self.directories: set[str] = {""}  # relative paths known to be real directories
        self.directory_times: dict[str, int] = {}
        self.size = 0
        self.skipped_xattrs = False

    def run(self, archive: tarfile.TarFile) -> int:
        for member in archive:
            self.budget.reach(archive.offset)  # where this entry's data ends: refused before it is written
            self._entry(archive, member)
        for relative, mtime_ns in sorted(self.directory_times.items(), key=lambda item: -len(item[0])):
            os.utime(self._path(relative), ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.size

    def _refuse(self, name: str, why: str) -> ImagePullError:
        return ImagePullError(f"layer {self.label}: refusing {name!r}: {why}")

    def _relative(self, name: str, *, link_of: str | None = None) -> str:
        """`name` inside the layer; `link_of`: the hard link whose target `name` is (named in the refusal)."""
        shown, what = (name, "") if link_of is None else (link_of, f"hard link to {name!r}: ")
        if name.startswith("/"):
            raise self._refuse(shown, what + "absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self._refuse(shown, what + "path outside the layer (..)")
        return "/".join(parts)

    def _path(self, relative: str) -> str:
        return os.path.join(self.root, relative) if relative else self.root

    def _parent_ready(self, relative: str, name: str) -> None:
        """Every ancestor of `relative` is a real directory (made when missing), never a symbolic link."""
        parent = os.path.dirname(relative)
        if parent in self.directories:
            return
        self._parent_ready(parent, name)
        path = self._path(parent)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            if stat.S_ISLNK(mode):
                raise self._refuse(name, f"writes through the symbolic link {parent!r}")
            if not stat.S_ISDIR(mode):
                raise self._refuse(name, f"{parent!r} is not a directory")
        self.directories.add(parent)

    def _clear(self, relative: str, *, keep_directory: bool) -> None:
        """Make room for a new entry at `relative`: an earlier entry of the same name goes (a directory
        stays when the new entry is one too)."""
        path = self._path(relative)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            if keep_directory:
                return
            shutil.rmtree(path)
            prefix = relative + "/"
            self.directories = {d for d in self.directories if d != relative and not d.startswith(prefix)}
        else:
            os.unlink(path)

    def _entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        relative = self._relative(member.name)
        if not relative:
            return  # the layer's root: overlayfs takes the root's attributes from the upper directory
        self._parent_ready(relative, member.name)
        base = os.path.basename(relative)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(relative, base)
            return
        path = self._path(relative)
        self._clear(relative, keep_directory=member.isdir())
        if member.isdir():
            if relative not in self.directories:
                os.mkdir(path, 0o700)
                self.directories.add(relative)
        elif member.isreg():
            self._file(archive, member, path)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            self._hardlink(member, path)
            return  # the target's inode, with the target's attributes
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            log.debug("layer %s: skipping %r of tar type %r", self.label, member.name, member.type)
            return
        self._attributes(member, relative, path)

    def _file(self, archive: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        """The file's data regions written where they go (a sparse member's map, else the whole file),
        zero runs left as holes, then the file cut to its size."""
        sparse = cast("list[tuple[int, int]] | None", member.sparse)  # typeshed says int
        regions = [(offset, count) for offset, count in sparse or [(0, member.size)] if count]
        if any(offset < 0 or offset + count > member.size for offset, count in regions):
            raise self._refuse(member.name, "sparse map outside the file")
        source = archive.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if source is not None:
                # The unbuffered reader: it seeks within the member (forward in the stream, what a sparse
                # map needs), where the buffered one asks the stream whether it is seekable and fails.
                data = cast(_Member, cast(io.BufferedReader, source).raw)
                for offset, count in regions:
                    data.seek(offset)
                    _copy_sparsely(data, fd, offset, count)
            os.ftruncate(fd, member.size)
        finally:
            os.close(fd)
        self.size += sum(count for _, count in regions)

    def _hardlink(self, member: tarfile.TarInfo, path: str) -> None:
        target = self._relative(member.linkname, link_of=member.name)
        if not target:
            raise self._refuse(member.name, "hard link to the layer's root")
        self._parent_ready(target, member.name)
        try:
            mode = os.lstat(self._path(target)).st_mode
        except FileNotFoundError:
            raise self._refuse(member.name, f"hard link to {member.linkname!r}, which is not in the layer") from None
        if stat.S_ISDIR(mode):
            raise self._refuse(member.name, "hard link to a directory")
        os.link(self._path(target), path, follow_symlinks=False)

    def _whiteout(self, relative: str, base: str) -> None:
        parent = os.path.dirname(relative)
        if base == OPAQUE_MARKER:
            os.setxattr(self._path(parent), OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, ...): nothing for overlayfs
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise self._refuse(relative, f"whiteout of {name!r}" if name else "whiteout without a name")
        hidden = os.path.join(parent, name) if parent else name
        self._clear(hidden, keep_directory=False)
        os.mknod(self._path(hidden), stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def _attributes(self, member: tarfile.TarInfo, relative: str, path: str) -> None:
        os.lchown(path, member.uid, member.gid)
        mtime_ns = int(member.mtime * 1_000_000_000)
        if member.issym():
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        else:
            os.chmod(path, stat.S_IMODE(member.mode))  # after chown, which clears set-id bits
            if member.isdir():
                self.directory_times[relative] = mtime_ns
            else:
                os.utime(path, ns=(mtime_ns, mtime_ns))
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr.") and not key.startswith("SCHILY.xattr.trusted.overlay."):
                self._xattr(path, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))

    def _xattr(self, path: str, name: str, value: bytes) -> None:
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as exc:
            if not self.skipped_xattrs:
                log.info("layer %s: extended attribute %s not kept (%s); later ones are not reported",
                         self.label, name, exc.strerror)
            self.skipped_xattrs = True


def _copy_sparsely(source: _Readable, fd: int, offset: int, count: int) -> None:
    """`count` bytes from `source` into `fd` at `offset`, skipping all-zero chunks (holes once the file is
    cut to its size)."""
    end = offset + count
    while offset < end:
        chunk = source.read(min(_COPY_BYTES, end - offset))
        if not chunk:
            raise EOFError("unexpected end of data")
        if chunk.count(0) != len(chunk):
            view = memoryview(chunk)
            position = offset
            while view:
                written = os.pwrite(fd, view, position)
                view, position = view[written:], position + written
        offset += len(chunk)
