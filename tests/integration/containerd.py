"""A real containerd for tests: its own config, socket, root, state, cgroups and namespaces.

    from tests.integration.containerd import containerd, cri_images  # noqa: F401  (pytest fixtures)
    # or, for another scope: with running_containerd(images) as containerd: ...

    def test_x(containerd: Containerd) -> None:
        containerd.endpoint                      # "unix:///tmp/na-ctrd-.../containerd.sock"
        containerd.cgroup_parent("pod1")         # "/nodeagent-test-<hex>/pods/pod1": use it for every sandbox
        containerd.restart()                     # stop and start again; sandboxes and containers keep running

Isolation from the machine (whose containerd, /run/containerd, /var/lib/containerd and network are
never touched):
- a holder process (`sleep infinity`) owns a new network namespace (only `lo`, up) and a private
  mount namespace with tmpfs on /run and /var/lib, where containerd 1.6 puts what its config cannot
  move (shim sockets under /run/containerd/s, sandbox netns under /run/netns, CNI's cache under
  /var/lib/cni); containerd runs in both through nsenter, so a CNI bridge exists only in there;
- the config sets root, state, sockets and the opt plugin's directory under a temporary directory,
  the CNI configuration (bridge + host-local with its own dataDir) and the cgroupfs driver
  (SystemdCgroup = false), restrict_oom_score_adj = true (root here lacks CAP_SYS_RESOURCE) and a
  sandbox_image imported with `ctr -n k8s.io images import` (see ociimage.py);
- the holder, containerd, its shims and runc run in `<cgroup root>/daemon` of the pids hierarchy,
  and pods in `<cgroup root>/pods/...`, so teardown SIGKILLs exactly what lives under the test's
  cgroup root, by PID, removes those cgroups in every hierarchy, and the directory. The namespaces
  and their mounts disappear with their last process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from nodeagent.runtime.cri import api_pb2, api_pb2_grpc
from tests.integration.ociimage import BUSYBOX_IMAGE, PAUSE_IMAGE, build_busybox, build_pause

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
DEBIAN_PACKAGES = "containerd runc containernetworking-plugins busybox-static gcc libc6-dev"
POD_SUBNET = "10.88.0.0/16"


@dataclass(frozen=True, slots=True)
class TestImages:
    __test__ = False  # not a test class, whatever pytest makes of its name
    pause_tar: Path
    busybox_tar: Path


def cgroup_mounts() -> list[Path]:
    """Every cgroup (v1, named v1 and v2) mount point of this machine."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] in ("cgroup", "cgroup2"):
            mounts.append(Path(fields[4]))
    return mounts


def pids_hierarchy() -> Path:
    """The hierarchy that tracks the test's processes: v1 `pids`, else the v2 mount."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        fstype, options = fields[separator + 1], fields[separator + 3].split(",")
        if (fstype == "cgroup" and "pids" in options) or (fstype == "cgroup2" and fields[4] == "/sys/fs/cgroup"):
            return Path(fields[4])
    raise RuntimeError("no pids cgroup hierarchy on this machine")


def config_toml(base: Path, *, systemd_cgroup: bool = False) -> str:
    return f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = {"true" if systemd_cgroup else "false"}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{base}/cni"
"""


def cni_conflist(base: Path) -> str:
    return f"""\
{{
  "cniVersion": "0.4.0",
  "name": "nodeagent-test",
  "plugins": [
    {{"type": "bridge", "bridge": "natest0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {{"type": "host-local", "dataDir": "{base}/cni-ipam", "ranges": [[{{"subnet": "{POD_SUBNET}"}}]],
               "routes": [{{"dst": "0.0.0.0/0"}}]}}}}
  ]
}}
"""


class Containerd:
    """One containerd, started and stopped by the test; see the module docstring."""

    def __init__(self, base: Path, images: TestImages, *, systemd_cgroup: bool = False) -> None:
        self.base = base
        self.images = images
        self.systemd_cgroup = systemd_cgroup
        self.socket = base / "containerd.sock"
        self.endpoint = f"unix://{self.socket}"
        self.config_path = base / "config.toml"
        self.log_path = base / "containerd.log"
        self.cgroup_root = f"/nodeagent-test-{secrets.token_hex(4)}"
        self.tracking = pids_hierarchy()
        self.holder: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # -- what tests use --------------------------------------------------------------------------

    def cgroup_parent(self, name: str) -> str:
        """A sandbox cgroup_parent (cgroupfs form) under the test's cgroup root."""
        return f"{self.cgroup_root}/pods/{name}"

    @property
    def netns(self) -> str:
        """containerd's network namespace, where its pods' CNI bridge is."""
        assert self.holder is not None
        return f"/proc/{self.holder.pid}/ns/net"

    def ctr(self, *args: str) -> str:
        """`ctr` against this containerd, in the CRI plugin's k8s.io namespace."""
        result = subprocess.run([CTR, "--address", str(self.socket), "--namespace", "k8s.io", *args],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def in_namespaces(self, *command: str) -> str:
        """Run a command in containerd's network and mount namespaces (e.g. `ip addr`)."""
        assert self.holder is not None
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-n", "-m", *command],
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start containerd (in the holder's namespaces) and wait until it answers."""
        assert self.holder is not None and self.process is None
        daemon_procs = self.tracking / self.cgroup_root.lstrip("/") / "daemon" / "cgroup.procs"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh", str(daemon_procs),
                 "nsenter", "-t", str(self.holder.pid), "-n", "-m", CONTAINERD, "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def stop(self) -> None:
        """SIGTERM containerd and wait for it; its shims, sandboxes and containers keep running."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- set-up and teardown ---------------------------------------------------------------------

    def set_up(self) -> None:
        for directory in ("root", "state", "opt", "cni", "cni-ipam"):
            (self.base / directory).mkdir()
        self.config_path.write_text(config_toml(self.base, systemd_cgroup=self.systemd_cgroup))
        (self.base / "cni" / "10-nodeagent-test.conflist").write_text(cni_conflist(self.base))
        daemon_cgroup = self.tracking / self.cgroup_root.lstrip("/") / "daemon"
        daemon_cgroup.mkdir(parents=True)
        ready = self.base / "namespaces-ready"
        script = ('echo $$ > "$1" && mount -t tmpfs -o mode=0755 tmpfs /run && '
                  'mount -t tmpfs -o mode=0755 tmpfs /var/lib && ip link set lo up && '
                  'touch "$2" && exec sleep infinity')
        holder_log = self.base / "holder.log"
        with holder_log.open("wb") as log:
            self.holder = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                 str(daemon_cgroup / "cgroup.procs"), str(ready)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no namespaces for containerd: {holder_log.read_text(errors='replace')}")
            time.sleep(0.01)
        self.start()
        for archive in (self.images.pause_tar, self.images.busybox_tar):
            self.ctr("images", "import", str(archive))

    def tear_down(self) -> None:
        """Stop everything the test started under its cgroup root and remove what it created."""
        try:
            self.stop()
        finally:
            try:
                self._kill_everything()
            finally:
                try:
                    self._remove_cgroups()
                finally:
                    shutil.rmtree(self.base, ignore_errors=True)

    def _wait_ready(self) -> None:
        """Until CRI's Status says RuntimeReady and NetworkReady: containerd serves its socket before
        its CRI plugin has loaded its state ("server is not initialized yet") and the CNI config."""
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(self.endpoint) as channel:
            runtime = api_pb2_grpc.RuntimeServiceStub(channel)
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"containerd exited with {self.process.returncode}:\n{self.log()[-3000:]}")
                if self.socket.exists():
                    try:
                        status = runtime.Status(api_pb2.StatusRequest(), timeout=2)
                        if all(condition.status for condition in status.status.conditions):
                            return
                    except grpc.RpcError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"containerd's CRI not ready within 30 s:\n{self.log()[-3000:]}")
                time.sleep(0.02)

    def _pids(self) -> set[int]:
        root = self.tracking / self.cgroup_root.lstrip("/")
        pids: set[int] = set()
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                try:
                    pids.update(int(line) for line in procs.read_text().split())
                except OSError:
                    continue
        return pids

    def _kill_everything(self) -> None:
        deadline = time.monotonic() + 15
        while pids := self._pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes under {self.cgroup_root} survive SIGKILL: {sorted(pids)}")
            time.sleep(0.05)
        if self.holder is not None:
            self.holder.wait(timeout=10)
            self.holder = None

    def _remove_cgroups(self) -> None:
        for mount in cgroup_mounts():
            root = mount / self.cgroup_root.lstrip("/")
            if not root.is_dir():
                continue
            directories = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for directory in [*directories, root]:
                deadline = time.monotonic() + 5
                while True:
                    try:
                        directory.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)


def missing_tools() -> list[str]:
    return [tool for tool in (CONTAINERD, CTR, RUNC, f"{CNI_BIN_DIR}/bridge", "/bin/busybox")
            if not Path(tool).exists()] + ([] if shutil.which("gcc") else ["gcc"])


@pytest.fixture(scope="session")
def cri_images(tmp_path_factory: pytest.TempPathFactory) -> TestImages:
    """The pause and busybox image tars, built once per test session."""
    if os.geteuid() != 0:
        pytest.skip("needs root: containerd, namespaces and cgroups")
    if missing := missing_tools():
        pytest.skip(f"missing {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES}")
    workdir = tmp_path_factory.mktemp("cri-images")
    return TestImages(pause_tar=build_pause(workdir), busybox_tar=build_busybox(workdir))


@contextlib.contextmanager
def running_containerd(images: TestImages, *, systemd_cgroup: bool = False) -> Iterator[Containerd]:
    """A running containerd with the test images imported, for any scope; everything removed after.

    With NODEAGENT_TEST_LOG set, containerd's log is printed at the end.
    """
    # A short path under /tmp: the socket paths must stay under 108 bytes.
    instance = Containerd(Path(tempfile.mkdtemp(prefix="na-ctrd-")), images, systemd_cgroup=systemd_cgroup)
    try:
        instance.set_up()
        yield instance
    finally:
        if os.environ.get("NODEAGENT_TEST_LOG"):
            print(instance.log())
        instance.tear_down()


@pytest.fixture(scope="module")
def containerd(cri_images: TestImages) -> Iterator[Containerd]:
    """One containerd for a test module (about 0.5 s to start with the images)."""
    with running_containerd(cri_images) as instance:
        yield instance


__all__ = ["BUSYBOX_IMAGE", "PAUSE_IMAGE", "Containerd", "containerd", "cri_images", "running_containerd"]
