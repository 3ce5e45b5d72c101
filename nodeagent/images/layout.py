"""The image store's files on disk, and the lock that keeps pulls and prunes apart.

    <root>/blobs/sha256/<hex>                 manifests, indexes and configs, as served (verified)
    <root>/layers/sha256/<hex>/fs/            a layer unpacked, named by its blob's digest
    <root>/layers/sha256/<hex>/layer.json     {"diffId": ..., "sizeBytes": ...}
    <root>/images/<sha256 of reference>.json  an image record; its mtime is when it was last used
    <root>/leases/<holder>.json               an image a container holds: never pruned while held
    <root>/tmp/                               downloads and unpacks under way (renamed into place)
    <root>/lock                               flock: shared by pulls and ensures, exclusive by prune

Blocking: the store calls these through asyncio.to_thread. Every file is written to a temporary name
and renamed, and a layer directory appears by one rename, so a crash leaves whole files or nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from nodeagent.durable import write_atomically
from nodeagent.images.errors import ImageError

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What the store knows about one reference after its last pull."""

    reference: str  # normalised
    digest: str  # what the reference resolved to: an index or a manifest
    manifest_digest: str  # this platform's manifest
    config_digest: str
    layers: tuple[str, ...]  # layer blob digests, lowest first
    blobs: tuple[str, ...]  # index (if any), manifest and config
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    pulled: str  # RFC 3339, UTC
    stop_signal: str = ""  # the config's StopSignal (absent from records of older agents: none)

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "reference": self.reference, "digest": self.digest,
                "manifestDigest": self.manifest_digest, "configDigest": self.config_digest,
                "layers": list(self.layers), "blobs": list(self.blobs),
                "config": {"entrypoint": list(self.entrypoint), "cmd": list(self.cmd), "env": list(self.env),
                           "workingDir": self.working_dir, "user": self.user, "stopSignal": self.stop_signal},
                "pulled": self.pulled}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        config = data["config"]
        return cls(str(data["reference"]), str(data["digest"]), str(data["manifestDigest"]),
                   str(data["configDigest"]), tuple(data["layers"]), tuple(data["blobs"]),
                   tuple(config["entrypoint"]), tuple(config["cmd"]), tuple(config["env"]),
                   str(config["workingDir"]), str(config["user"]), str(data["pulled"]),
                   str(config.get("stopSignal", "")))


@dataclass(frozen=True, slots=True)
class Lease:
    """A container's hold on an image's content, whatever happens to the reference meanwhile."""

    holder: str
    digest: str
    blobs: tuple[str, ...]
    layers: tuple[str, ...]


class StoreLayout:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.layers = os.path.join(self.root, "layers", "sha256")
        self.images = os.path.join(self.root, "images")
        self.leases = os.path.join(self.root, "leases")
        self.tmp = os.path.join(self.root, "tmp")

    def create(self) -> None:
        for directory in (self.blobs, self.layers, self.images, self.leases, self.tmp):
            os.makedirs(directory, mode=0o700, exist_ok=True)

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, _hex(digest))

    def layer_dir(self, digest: str) -> str:
        return os.path.join(self.layers, _hex(digest))

    def layer_fs(self, digest: str) -> str:
        return os.path.join(self.layers, _hex(digest), "fs")

    def record_path(self, reference: str) -> str:
        return os.path.join(self.images, hashlib.sha256(reference.encode()).hexdigest() + ".json")

    def lease_path(self, holder: str) -> str:
        return os.path.join(self.leases, hashlib.sha256(holder.encode()).hexdigest() + ".json")

    # -- blobs and layers

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as handle:
            return handle.read()

    def write_blob(self, digest: str, data: bytes) -> None:
        if not self.has_blob(digest):
            write_atomically(self.blob_path(digest), data)

    def has_layer(self, digest: str) -> bool:
        return os.path.isfile(os.path.join(self.layer_dir(digest), "layer.json"))

    def layer_size(self, digest: str) -> int:
        try:
            with open(os.path.join(self.layer_dir(digest), "layer.json"), "rb") as handle:
                return int(json.load(handle)["sizeBytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def commit_layer(self, staged: str, digest: str, *, diff_id: str, size_bytes: int) -> None:
        """Move a staged layer (`staged/fs` unpacked) into place by one rename, with its layer.json."""
        write_atomically(os.path.join(staged, "layer.json"),
                         json.dumps({"diffId": diff_id, "sizeBytes": size_bytes}).encode())
        try:
            os.rename(staged, self.layer_dir(digest))
        except OSError as exc:
            if not self.has_layer(digest):  # another process committed the same layer first: fine
                raise ImageError(f"cannot store layer {digest}: {exc.strerror}") from None
            remove_tree(staged)

    def staging(self, prefix: str) -> str:
        """A new empty directory under tmp/, on the store's file system so renames are atomic."""
        return tempfile.mkdtemp(prefix=prefix, dir=self.tmp)

    # -- image records

    def read_record(self, reference: str) -> ImageRecord | None:
        return _read_record(self.record_path(reference))

    def write_record(self, record: ImageRecord) -> None:
        write_atomically(self.record_path(record.reference), json.dumps(record.to_json()).encode())

    def touch_record(self, reference: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.record_path(reference))

    def records(self) -> list[tuple[ImageRecord, float]]:
        """Every readable record with its last-used time (epoch seconds)."""
        found = []
        for name in _listdir(self.images):
            path = os.path.join(self.images, name)
            if name.endswith(".json") and (record := _read_record(path)) is not None:
                with contextlib.suppress(FileNotFoundError):
                    found.append((record, os.stat(path).st_mtime))
        return found

    # -- leases

    def write_lease(self, lease: Lease) -> None:
        data = {"version": VERSION, "holder": lease.holder, "digest": lease.digest, "blobs": list(lease.blobs),
                "layers": list(lease.layers)}
        # not fsynced (on the path to every container's start): a power cut that empties it ends its container too
        write_atomically(self.lease_path(lease.holder), json.dumps(data).encode(), sync=False)

    def remove_lease(self, holder: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lease_path(holder))

    def read_leases(self) -> list[Lease]:
        found = []
        for name in _listdir(self.leases):
            try:
                with open(os.path.join(self.leases, name), "rb") as handle:
                    body = handle.read()
                if not body:  # cut short by a power cut (leases are not fsynced): its container ended with it
                    continue
                data = json.loads(body)
                found.append(Lease(str(data["holder"]), str(data["digest"]), tuple(data["blobs"]),
                                   tuple(data["layers"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # prune must not guess: stop
                raise ImageError(f"unreadable lease {os.path.join(self.leases, name)}: {exc}") from None
        return found

    # -- the lock

    def lock(self, *, exclusive: bool) -> int:
        """Take the store's lock (blocking) and return its fd; `unlock` releases it."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove a file or a directory tree; already gone is fine."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _read_record(path: str) -> ImageRecord | None:
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
        if data.get("version") != VERSION:
            log.warning("image store: %s has version %r, not %d; ignored", path, data.get("version"), VERSION)
            return None
        return ImageRecord.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("image store: unreadable image record %s (%s); ignored", path, exc)
        return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _hex(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64:
        raise ImageError(f"not a sha256 digest: {digest!r}")
    return value
