"""Build small container images as OCI layout tars, from files on this machine, with no registry.

`ctr images import` takes the tars (containerd.py does it); the names are in the index's
`io.containerd.image.name` annotation. Two images serve the CRI tests:

    pause    /pause: a static C program that sleeps until SIGTERM and reaps children
    busybox  /bin/busybox (Debian's busybox-static) with every applet linked, /etc/passwd and
             /etc/group, and /bin/memhog: a static C program that allocates until the OOM killer comes

Tars are deterministic (mtime 0, root owner), so a layer's digest only changes with its content.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "nodeagent.test/pause:1"
BUSYBOX_IMAGE = "nodeagent.test/busybox:1"
BUSYBOX = "/bin/busybox"  # Debian's busybox-static
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_child(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction term = {.sa_handler = on_term}, child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &term, 0);
    sigaction(SIGTERM, &term, 0);
    sigaction(SIGCHLD, &child, 0);
    for (;;) pause();
}
"""

# memhog [MiB]: allocate and touch 1 MiB at a time, printing progress; without a limit it stops at MiB.
MEMHOG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1L << 20;
    for (long i = 1; i <= mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) return 1;
        memset(p, 1, 1 << 20);
        if (i % 16 == 0) { printf("%ld MiB\n", i); fflush(stdout); }
    }
    return 0;
}
"""


@dataclass(frozen=True, slots=True)
class ImageFile:
    path: str  # inside the image, without the leading "/"
    content: bytes | None = None  # None with link_to: a symlink; None without: a directory
    mode: int = 0o644
    link_to: str | None = None


def compile_static(source: str, output: Path) -> Path:
    """A static binary from C source, with the machine's gcc (package gcc + libc6-dev)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the test images: apt-get install gcc libc6-dev")
    source_path = output.with_suffix(".c")
    source_path.write_text(source)
    subprocess.run([gcc, "-static", "-Os", "-s", "-o", str(output), str(source_path)], check=True,
                   capture_output=True)
    return output


def layer_tar(files: list[ImageFile]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in files:
            info = tarfile.TarInfo(item.path)
            info.mtime = 0
            info.mode = item.mode
            if item.link_to is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = item.link_to
                tar.addfile(info)
            elif item.content is None:
                info.type = tarfile.DIRTYPE
                info.mode = item.mode if item.mode != 0o644 else 0o755
                tar.addfile(info)
            else:
                info.size = len(item.content)
                tar.addfile(info, io.BytesIO(item.content))
    return buffer.getvalue()


def oci_archive(name: str, layer: bytes, *, entrypoint: list[str], cmd: list[str], output: Path,
                stop_signal: str = "") -> Path:
    """An OCI image layout tar of one image with one uncompressed layer, named for `ctr images import`."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    layer_ref = blob(layer)
    config = {
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": [PATH_ENV], "WorkingDir": "/",
                   **({"StopSignal": stop_signal} if stop_signal else {})},
        "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(canonical(config))},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(canonical(manifest)),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
        }],
    }
    entries = [ImageFile("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})),
               ImageFile("index.json", canonical(index)), ImageFile("blobs"), ImageFile("blobs/sha256")]
    entries += [ImageFile(f"blobs/sha256/{digest.removeprefix('sha256:')}", data) for digest, data in blobs.items()]
    output.write_bytes(layer_tar(entries))
    return output


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def busybox_applets() -> list[str]:
    listed = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted({line.strip() for line in listed.splitlines() if line.strip() and line.strip() != "bin/busybox"})


def build_pause(workdir: Path) -> Path:
    binary = compile_static(PAUSE_C, workdir / "pause")
    layer = layer_tar([ImageFile("pause", binary.read_bytes(), mode=0o755)])
    return oci_archive(PAUSE_IMAGE, layer, entrypoint=["/pause"], cmd=[], output=workdir / "pause.tar")


def build_busybox(workdir: Path) -> Path:
    memhog = compile_static(MEMHOG_C, workdir / "memhog")
    files = [ImageFile(d) for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev")]
    files += [ImageFile("tmp", mode=0o1777)]
    files += [ImageFile("bin/busybox", Path(BUSYBOX).read_bytes(), mode=0o755),
              ImageFile("bin/memhog", memhog.read_bytes(), mode=0o755),
              ImageFile("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
              ImageFile("etc/group", b"root:x:0:\nnogroup:x:65534:\n")]
    files += [ImageFile(applet, link_to="/bin/busybox") for applet in busybox_applets()
              if not applet.startswith("bin/busybox")]
    return oci_archive(BUSYBOX_IMAGE, layer_tar(files), entrypoint=[], cmd=["sh"], output=workdir / "busybox.tar")
