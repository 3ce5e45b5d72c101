"""Test images built from `busybox-static`, and a small pusher for the distribution API (blob upload +
manifest PUT), so tests need nothing but a local registry.

    layer = busybox_layer()                                    # /bin/busybox and its applet links
    pushed = push_image(registry, "test/busybox", "1.0", [layer], cmd=["sh"])
    pushed.reference                                           # "127.0.0.1:PORT/test/busybox:1.0"

Tars are deterministic (fixed mtimes, sorted entries): the same content always has the same digest.
`build_memhog()` compiles a static memory hog with `gcc -static` for OOM tests (skips without gcc);
`host_binary_layer("/usr/bin/stress")` carries a binary of this machine with the libraries `ldd` names.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.registry import Registry

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "sleep", "cat", "echo", "wget", "ls", "env", "id", "true", "false", "mkdir", "rm", "touch",
           "test", "head", "tail", "httpd", "nc", "ps", "kill", "grep", "sed", "hostname", "stat", "printf")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MTIME = 1_700_000_000

MEMHOG_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* memhog MiB: allocate and touch MiB mebibytes, one at a time, then sleep forever. */
int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 64;
    for (long i = 0; i < mib; i++) {
        char *block = malloc(1 << 20);
        if (block == NULL) { perror("malloc"); return 1; }
        memset(block, 1, 1 << 20);
    }
    printf("allocated %ld MiB\n", mib);
    fflush(stdout);
    for (;;) pause();
}
"""


@dataclass(frozen=True)
class Entry:
    """One tar entry: `kind` is "file", "dir", "symlink", "hardlink" or "char"."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""  # symlink or hardlink target
    uid: int = 0
    gid: int = 0
    xattrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    tar: bytes  # uncompressed
    blob: bytes  # as pushed (gzip unless made otherwise)
    media_type: str = GZIP_LAYER

    @property
    def digest(self) -> str:
        return sha256(self.blob)

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)


@dataclass(frozen=True)
class Pushed:
    registry: str
    repository: str
    tag: str
    digest: str  # of the manifest (or index) the tag points to
    config_digest: str
    layers: tuple[Layer, ...]
    manifest: bytes  # the document the tag points to

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def by_digest(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(entries: Sequence[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime, info.mode, info.uid, info.gid = MTIME, entry.mode, entry.uid, entry.gid
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs.items()}
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
            elif entry.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, entry.target
            elif entry.kind == "char":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 0, 0
            else:
                info.size = len(entry.data)
            archive.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return buffer.getvalue()


def gzip_layer(entries: Sequence[Entry], *, level: int = 6) -> Layer:
    tar = make_tar(entries)
    return Layer(tar, gzip.compress(tar, compresslevel=level, mtime=0))


@functools.cache
def busybox_layer() -> Layer:
    """A tiny root file system: busybox, applet links, /etc/passwd and group, empty /tmp /proc /sys /dev."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    entries = [Entry(name, "dir", mode=0o755) for name in ("bin", "dev", "etc", "proc", "sys", "root", "var")]
    entries.append(Entry("tmp", "dir", mode=0o1777))
    entries.append(Entry("bin/busybox", data=Path(BUSYBOX).read_bytes(), mode=0o755))
    entries += [Entry(f"bin/{applet}", "symlink", target="busybox") for applet in APPLETS]
    entries.append(Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"))
    entries.append(Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"))
    return gzip_layer(entries)


def image_config(layers: Sequence[Layer], *, entrypoint: Sequence[str] | None = None,
                 cmd: Sequence[str] | None = ("sh",), env: Sequence[str] = ("PATH=/bin",), working_dir: str = "",
                 user: str = "", architecture: str = "amd64", variant: str = "", stop_signal: str = "") -> bytes:
    config: dict[str, object] = {"Env": list(env), "Entrypoint": None if entrypoint is None else list(entrypoint),
                                 "Cmd": None if cmd is None else list(cmd), "WorkingDir": working_dir, "User": user}
    if stop_signal:
        config["StopSignal"] = stop_signal
    document: dict[str, object] = {
        "architecture": architecture, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "created": "2024-01-01T00:00:00Z",
    }
    if variant:
        document["variant"] = variant
    return json.dumps(document, sort_keys=True).encode()


def manifest_bytes(config: bytes, layers: Sequence[Layer]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.blob)}
                   for layer in layers],
    }).encode()


def _request(registry: Registry, method: str, url: str, *, data: bytes | None = None,
             headers: dict[str, str] | None = None, authorization: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    auth = authorization or registry.basic_authorization()
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        if method == "HEAD" and error.code == 404:
            return 404, {}
        raise AssertionError(f"{method} {url}: {error.code} {error.read()[:300]!r}") from None


def push_blob(registry: Registry, repository: str, data: bytes, *, authorization: str | None = None) -> str:
    digest = sha256(data)
    base = f"{registry.url}/v2/{repository}/blobs"
    if _request(registry, "HEAD", f"{base}/{digest}", authorization=authorization)[0] == 200:
        return digest
    _, headers = _request(registry, "POST", f"{base}/uploads/", data=b"", authorization=authorization)
    location = urllib.parse.urljoin(registry.url, headers["Location"])
    separator = "&" if "?" in location else "?"
    _request(registry, "PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}", data=data,
             headers={"Content-Type": "application/octet-stream"}, authorization=authorization)
    return digest


def push_manifest(registry: Registry, repository: str, tag: str, body: bytes, media_type: str, *,
                  authorization: str | None = None) -> str:
    _request(registry, "PUT", f"{registry.url}/v2/{repository}/manifests/{tag}", data=body,
             headers={"Content-Type": media_type}, authorization=authorization)
    return sha256(body)


def push_image(registry: Registry, repository: str, tag: str, layers: Sequence[Layer], *,
               config: bytes | None = None, authorization: str | None = None) -> Pushed:
    """Push the layers, the config (default: `image_config(layers)`) and an OCI manifest under `tag`."""
    config = config if config is not None else image_config(layers)
    for layer in layers:
        push_blob(registry, repository, layer.blob, authorization=authorization)
    push_blob(registry, repository, config, authorization=authorization)
    manifest = manifest_bytes(config, layers)
    digest = push_manifest(registry, repository, tag, manifest, OCI_MANIFEST, authorization=authorization)
    return Pushed(registry.host, repository, tag, digest, sha256(config), tuple(layers), manifest)


def push_index(registry: Registry, repository: str, tag: str, platforms: Sequence[tuple[Pushed, str]], *,
               authorization: str | None = None) -> Pushed:
    """An OCI index under `tag` over manifests already pushed, each with its platform "os/arch[/variant]";
    an attestation-like entry for "unknown/unknown" is added, as BuildKit does."""
    entries = []
    for pushed, platform in [*platforms, (platforms[0][0], "unknown/unknown")]:
        os_name, architecture, *variant = platform.split("/")
        described: dict[str, object] = {"os": os_name, "architecture": architecture}
        if variant:
            described["variant"] = variant[0]
        entries.append({"mediaType": OCI_MANIFEST, "digest": pushed.digest, "size": len(pushed.manifest),
                        "platform": described})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = push_manifest(registry, repository, tag, index, OCI_INDEX, authorization=authorization)
    first = platforms[0][0]
    return Pushed(registry.host, repository, tag, digest, first.config_digest, first.layers, index)


def build_memhog(directory: Path) -> Path:
    """Compile the static memory hog (`memhog MiB`: allocate and touch MiB, then sleep) into `directory`."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc to build the static memory hog (apt-get install gcc libc6-dev)")
    directory.mkdir(parents=True, exist_ok=True)
    source, binary = directory / "memhog.c", directory / "memhog"
    source.write_text(MEMHOG_SOURCE)
    result = subprocess.run([gcc, "-static", "-O2", "-o", str(binary), str(source)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"gcc -static failed (is libc6-dev installed?): {result.stderr.strip()[:300]}")
    return binary


def memhog_layer(directory: Path) -> Layer:
    """A layer with /bin/memhog, to stack on busybox_layer()."""
    binary = build_memhog(directory)
    return gzip_layer([Entry("bin", "dir", mode=0o755), Entry("bin/memhog", data=binary.read_bytes(), mode=0o755)])


def host_binary_layer(*binaries: str) -> Layer:
    """A layer with binaries of this machine at their paths and the shared libraries `ldd` names for them
    (their content at the names the loader asks for), to stack on busybox_layer()."""
    files: dict[str, bytes] = {}
    for binary in binaries:
        if not os.access(binary, os.X_OK):
            pytest.skip(f"needs {binary} on this machine (Debian: apt-get install {Path(binary).name})")
        files[binary] = Path(binary).read_bytes()
        listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        for line in listing.splitlines():
            words = line.split()
            path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
            if path.startswith("/"):
                files[path] = Path(path).read_bytes()  # a symbolic link's target, under the link's name
    directories = sorted({str(parent) for path in files for parent in Path(path.lstrip("/")).parents
                          if str(parent) != "."})
    entries = [Entry(directory, "dir", mode=0o755) for directory in directories]
    entries += [Entry(path.lstrip("/"), data=data, mode=0o755) for path, data in sorted(files.items())]
    return gzip_layer(entries)
