"""The VM suite's host side: the cached image, and one boot of it that runs a command and brings back its files.

    image = ensure_image()                     # built once, reused while its key is the same
    boot = run_in_vm(image, "v2", command, timeout_s=420)
    boot.rc, boot.files["junit.xml"], boot.console_tail(50)

Adapted from shared/tools/nodevm (build-image.sh, run-in-vm.sh). The image lives in
$NODEAGENT_VM_CACHE (default <repo>/.cache/vm): wheels-<key>/ (the guest's Python packages,
downloaded by the host venv's pip), rootfs/ (the debootstrapped tree), image-<key>/ (vmlinuz,
initrd.img, disk.img). The image's key is a hash of build-image.sh, the guest's requirements, the
wheels (pinned to the host venv's versions) and the kernel, so it is rebuilt when any of them
changes. Standard library only: the runner must work before anything else is installed.

For debugging: NODEAGENT_VM_APPEND adds to the kernel command line, NODEAGENT_VM_CPU replaces the
emulated CPU model (default max,la57=off).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-image.sh"
# What the guest needs beyond nodeagent's own dependencies: pytest.
GUEST_EXTRAS = ("pytest", "pytest-timeout", "pytest-asyncio")
HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs",
              "cpio": "cpio", "depmod": "kmod", "busybox": "busybox-static"}

# The kernel command line of each configuration: pure cgroup v2, or cgroup v1 (hybrid) + systemd.
BOOTS = {
    "v2": "systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all",
    "v1": "systemd.unified_cgroup_hierarchy=0",
}
CPU = "max,la57=off"
HEARTBEAT_S = 5.0  # the guest command writes the time to ctl/heartbeat this often (tests/vm/run.py)
STALL_S = 60.0  # no heartbeat for this long: the guest froze; stop it rather than wait out its limit
# the console (a file on the host) gets the kernel's warnings and systemd's failures, not the whole
# boot: every character written to the emulated serial port costs time under TCG
COMMON_APPEND = ("console=ttyS0 root=/dev/vda rw loglevel=4 panic=-1 systemd.show_status=error swapaccount=1 "
                 "8250.nr_uarts=1")


class VMError(Exception):
    """The image could not be built or the VM did not run the command; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("NODEAGENT_VM_CACHE") or ROOT / ".cache" / "vm")


def _digest(*parts: bytes | str) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode() if isinstance(part, str) else part)
        hashed.update(b"\0")
    return hashed.hexdigest()[:16]


def guest_requirements() -> str:
    """nodeagent's dependencies (from pyproject.toml) and GUEST_EXTRAS, one a line."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    return "\n".join(sorted(set(project["dependencies"]) | set(GUEST_EXTRAS))) + "\n"


def host_versions(python: str) -> dict[str, str]:
    """The host venv's packages and versions (normalised names): the guest runs what the host's tests ran."""
    done = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=True)
    pairs = (line.split("==", 1) for line in done.stdout.splitlines() if "==" in line)
    return {_normalise(name): version.strip() for name, version in pairs}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel_versions(wheels: Path) -> dict[str, str]:
    """{name: version} of the wheels in a directory (name-version-tags.whl)."""
    return {_normalise(p.name.split("-")[0]): p.name.split("-")[1] for p in wheels.glob("*.whl")}


def kernel_version() -> str:
    versions = sorted((p.name for p in Path("/lib/modules").iterdir() if p.name.endswith("-amd64")
                       and "cloud" not in p.name and Path(f"/boot/vmlinuz-{p.name}").exists()),
                      key=lambda v: [int(x) if x.isdigit() else x for x in v.replace("-", ".").split(".")])
    if not versions:
        raise VMError("no Debian kernel on the host: apt-get install linux-image-amd64")
    return versions[-1]


def check_host() -> None:
    missing = [package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None
               and not Path(f"/bin/{tool}").exists()]
    if missing:
        raise VMError(f"missing on the host: {' '.join(sorted(set(missing)))} (scripts/test.sh installs them)")
    if os.geteuid() != 0:
        raise VMError("building the image needs root (debootstrap, chroot)")


@dataclass(frozen=True, slots=True)
class Image:
    directory: Path
    key: str
    built_s: float | None  # None: reused from the cache

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One build at a time per cache (two test runs may share it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _log(message: str) -> None:
    print(f"vm: {message}", file=sys.stderr, flush=True)


def ensure_wheels(cache: Path, requirements: str, python: str) -> Path:
    """The guest's wheels: downloaded (or built) once per requirement set, again when the host venv's
    version of one of them changed; pinned to the host venv's versions."""
    wheels = cache / f"wheels-{_digest(requirements)}"
    host = host_versions(python)
    if (wheels / ".complete").exists():
        stale = {name: (version, host[name]) for name, version in _wheel_versions(wheels).items()
                 if name in host and host[name] != version}
        if not stale:
            return wheels
        _log(f"the host venv has other versions now: {stale}")
    for old in cache.glob("wheels-*"):
        shutil.rmtree(old, ignore_errors=True)
    wheels.mkdir(parents=True)
    (wheels / "requirements.txt").write_text(requirements)
    (wheels / "constraints.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(host.items())))
    _log(f"downloading the guest's wheels into {wheels}")
    done = subprocess.run([python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                           "--wheel-dir", str(wheels), "-r", str(wheels / "requirements.txt"),
                           "-c", str(wheels / "constraints.txt")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(wheels, ignore_errors=True)
        raise VMError(f"pip wheel for the guest failed:\n{done.stdout}{done.stderr}")
    (wheels / ".complete").touch()
    return wheels


def ensure_image(*, python: str | None = None) -> Image:
    """The image for the current build script, requirements and kernel: from the cache, else built."""
    check_host()
    cache = cache_dir()
    python = python or sys.executable
    with _locked(cache):
        requirements = guest_requirements()
        wheels = ensure_wheels(cache, requirements, python)
        kver = kernel_version()
        wheel_names = "\n".join(sorted(p.name for p in wheels.glob("*.whl")))
        key = _digest(BUILD_SCRIPT.read_bytes(), requirements, wheel_names, kver)
        directory = cache / f"image-{key}"
        if (directory / ".complete").exists():
            return Image(directory, key, None)
        for old in cache.glob("image-*"):
            shutil.rmtree(old, ignore_errors=True)
        _log(f"building the VM image {directory.name} (kernel {kver})")
        began = time.monotonic()
        done = subprocess.run(["bash", str(BUILD_SCRIPT), str(directory), str(cache / "rootfs"), str(wheels),
                               str(wheels / "requirements.txt")], env={**os.environ, "KVER": kver}, check=False)
        if done.returncode != 0:
            raise VMError(f"build-image.sh failed (exit {done.returncode})")
        (directory / ".complete").touch()
        return Image(directory, key, time.monotonic() - began)


@dataclass
class Boot:
    """One boot: the command's exit code (None: it never finished) and what it left in the control share."""

    name: str
    rc: int | None
    files: dict[str, bytes] = field(default_factory=dict)
    boot_s: float | None = None  # qemu start -> the guest's runner started
    command_s: float | None = None  # the command itself, by the guest's clock
    total_s: float = 0.0
    timed_out: bool = False
    stalled: bool = False  # stopped early: its heartbeat stopped

    def text(self, name: str) -> str:
        return self.files.get(name, b"").decode(errors="replace")

    def console_tail(self, lines: int = 50) -> str:
        return "\n".join(self.text("console.log").splitlines()[-lines:])


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _watch(qemu: subprocess.Popen[bytes], heartbeat: Path, *, deadline: float) -> tuple[bool, bool]:
    """Wait for qemu to end: (timed out, stalled). Stalled: the guest's heartbeat, once begun, stopped."""
    while True:
        try:
            qemu.wait(timeout=HEARTBEAT_S)
            return False, False
        except subprocess.TimeoutExpired:
            pass
        now = time.time()
        if now >= deadline:
            return True, False
        with contextlib.suppress(OSError):
            if now - heartbeat.stat().st_mtime > STALL_S:
                return False, True


def run_in_vm(image: Image, name: str, command: str, *, timeout_s: float, memory: str = "1G", cpus: int = 2,
              share: Path = ROOT) -> Boot:
    """Boot the image with BOOTS[name], run `command` (bash) as root in `share` (mounted over 9p at the
    same path), power off. The command finds the control share at /run/nodevm/ctl."""
    ctl = Path(tempfile.mkdtemp(prefix=f"nodeagent-vm-{name}-"))
    try:
        (ctl / "cmd").write_text(command + "\n")
        (ctl / "env").write_text(f"NODEVM_HOSTDIR={share}\n")
        append = f"{COMMON_APPEND} {BOOTS[name]} {os.environ.get('NODEAGENT_VM_APPEND', '')}".strip()
        argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi,tb-size=256", "-cpu", os.environ.get("NODEAGENT_VM_CPU", CPU),
                "-m", memory, "-smp", str(cpus), "-display", "none", "-monitor", "none",
                "-serial", f"file:{ctl / 'console.log'}", "-nic", "none", "-no-reboot",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
                "-drive", f"file={image.disk},if=virtio,format=raw,snapshot=on,cache=unsafe",
                "-virtfs", f"local,path={ctl},mount_tag=nodevm_ctl,security_model=none,id=ctl",
                "-virtfs", f"local,path={share},mount_tag=nodevm_host,security_model=none,id=host"]
        began = time.time()
        with open(ctl / "qemu.log", "wb") as qemu_log:
            qemu = subprocess.Popen(argv, stdout=qemu_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            timed_out, stalled = _watch(qemu, ctl / "heartbeat", deadline=began + timeout_s)
            if timed_out or stalled:
                qemu.terminate()
                try:
                    qemu.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    qemu.kill()
                    qemu.wait()
        ended = time.time()
        files = {p.name: p.read_bytes() for p in ctl.iterdir() if p.is_file()}
        rc_text = files.get("rc", b"").strip()
        guest_started = _read_float(ctl / "guest_started")
        command_started = _read_float(ctl / "command_started")
        # the guest's clock is the host's (kvmclock/RTC at boot), good to a second: enough here
        boot_s = guest_started - began if guest_started else None
        command_ended = _read_float(ctl / "command_ended")
        command_s = command_ended - command_started if command_started and command_ended else None
        return Boot(name, int(rc_text) if rc_text else None, files, boot_s=boot_s, command_s=command_s,
                    total_s=ended - began, timed_out=timed_out, stalled=stalled)
    finally:
        shutil.rmtree(ctl, ignore_errors=True)
