"""nodeagent's runc runtime beside `podman kube play`, in one run, on the same image and the same pod (run as root).

    .venv/bin/python bench/runc_vs_podman.py [--pods 20] [--no-pull] [--runc-path crun]

Measures, for each of --pods pods one after the other, the time from asking for the pod to the container's
first instruction: for nodeagent from writing the manifest into its staticPodPath, for podman from starting
`podman kube play`. The container's first instruction writes into a FIFO (a hostPath volume) that this
script waits on. The image (busybox, from a registry on 127.0.0.1) is in both stores already, and one
warm-up pod each is not counted. Both pods use hostNetwork (podman would otherwise add a bridge to this
machine's network; nodeagent's pod networks are off too). Prints p50 and p90 for both and the ratio
(goal: nodeagent >= 5x faster), then pull + unpack of a ~5 MB image (bench/image_pull.py). --runc-path
is nodeagent's `nodeagent.runcPath`: `crun` measures the runc runtime driving crun instead.

podman and catatonit (its pause binary) are installed with apt-get when missing; the runc and podman
versions measured are printed. It runs with its own storage, run and network directories
and configuration under a temporary directory; whatever it still creates on this machine (/run/libpod,
/var/lib/containers, the libpod_parent cgroups, ...) and did not exist before is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.firstinstruction import time_to_first_instruction
from nodeagent.cgroups.detect import detect_layout
from tests.integration.images import busybox_layer, push_image
from tests.integration.registry import Registry, running_registry
from tests.integration.test_runc import RuncAgent

# What podman 4.3 makes outside its configured directories (as root), checked before and removed after.
PODMAN_FOOTPRINT = ("/run/libpod", "/run/containers", "/var/lib/containers", "/etc/containers/networks",
                    "/etc/cni/net.d/cni.lock", "/var/lib/cni")


def pod_manifest(name: str, image: str, fifos: Path) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "hostNetwork": True, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", f"echo go > /fifos/{name}; exec sleep 3600"],
                        "volumeMounts": [{"name": "fifos", "mountPath": "/fifos"}]}],
        "volumes": [{"name": "fifos", "hostPath": {"path": str(fifos)}}]}})


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(label: str, seconds: list[float]) -> str:
    return (f"{label:<28} p50 {percentile(seconds, .5) * 1000:6.0f} ms   p90 {percentile(seconds, .9) * 1000:6.0f} ms"
            f"   min {min(seconds) * 1000:5.0f} ms   max {max(seconds) * 1000:5.0f} ms")


# -- nodeagent ------------------------------------------------------------------------------------------

def bench_nodeagent(root: Path, registry: Registry, image: str, fifos: Path, pods: int, runc_path: str) -> list[float]:
    (root / "nodeagent").mkdir()
    agent = RuncAgent(root / "nodeagent", [registry], host_network=True, runcPath=runc_path)
    harness = agent.harness
    harness.configure({"nodeagent": {"logLevel": "INFO"}, "fileCheckFrequency": "20s"})
    try:
        harness.start()
        seconds = []
        for index in range(pods + 1):
            name = f"na-{index}"
            took = time_to_first_instruction(
                fifos / name, lambda name=name: harness.write(f"{name}.yaml", pod_manifest(name, image, fifos)))
            if index:  # the first pulls the image: a warm-up
                seconds.append(took)
        return seconds
    finally:
        agent.clean_up()


# -- podman -----------------------------------------------------------------------------------------------

def ensure_podman() -> str | None:
    """podman's path, with catatonit (its pause binary for `kube play`), each installed with apt-get when
    missing; None (with the reason printed) if impossible."""
    missing = [package for package, found in (("podman", shutil.which("podman")), ("catatonit", catatonit()))
               if found is None]
    if missing:
        print(f"{' and '.join(missing)} missing: apt-get install {' '.join(missing)} ...", flush=True)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                              capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            print(f"{' and '.join(missing)} cannot be installed: {done.stderr.strip()[-500:]}")
            return None
    return shutil.which("podman")


def catatonit() -> str | None:
    """Where podman finds its pause binary: on PATH or in its helper directory."""
    found = shutil.which("catatonit")
    return found or next((path for path in ("/usr/libexec/podman/catatonit", "/usr/lib/podman/catatonit")
                          if os.access(path, os.X_OK)), None)


def version(binary: str) -> str:
    """The first line of `binary --version`, as the measured versions are printed."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout.strip().splitlines() or [f"{binary}: version unknown"])[0]


class Podman:
    """podman with everything it can be told to keep in `root`: storage, run directory, networks, tmp."""

    def __init__(self, binary: str, root: Path, registry_host: str) -> None:
        self.binary = binary
        self.root = root
        # Root here lacks CAP_SYS_RESOURCE: podman's default rlimits (its own nproc and nofile) are refused.
        # runc, as nodeagent's, and crun would refuse this hybrid cgroup layout.
        (root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
            f'tmp_dir = "{root}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{root}/networks"\n')
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{root}/run"\ngraphroot = "{root}/storage"\n')
        (root / "registries.conf").write_text(
            f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf")}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()[-800:]}")
        return done

    def clean_up(self) -> None:
        """Its pods and containers killed (no grace period: `sleep` as PID 1 ignores SIGTERM) and removed."""
        for args in (("pod", "rm", "--force", "--time", "0", "--all"), ("rm", "--force", "--time", "0", "--all"),
                     ("system", "reset", "--force")):
            try:
                self.run(*args, check=False)
            except subprocess.TimeoutExpired:
                print(f"podman {' '.join(args)} did not finish within 120 s")


def bench_podman(binary: str, root: Path, registry_host: str, image: str, fifos: Path, pods: int) -> list[float]:
    podman = Podman(binary, root, registry_host)
    try:
        podman.run("pull", "--tls-verify=false", image)
        seconds = []
        for index in range(pods + 1):
            name = f"pm-{index}"
            manifest = root / f"{name}.yaml"
            manifest.write_text(pod_manifest(name, image, fifos))
            process: list[subprocess.Popen[str]] = []

            def play(manifest: Path = manifest, process: list[subprocess.Popen[str]] = process) -> None:
                process.append(subprocess.Popen([binary, "kube", "play", "--tls-verify=false", str(manifest)],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                env=podman.env))

            def failed(process: list[subprocess.Popen[str]] = process) -> None:
                if process[0].poll() not in (None, 0):
                    raise RuntimeError(f"podman kube play: {process[0].communicate()[1].strip()[-800:]}")

            try:
                took = time_to_first_instruction(fifos / name, play, failed)
            finally:
                if process:
                    process[0].communicate(timeout=120)
            if index:  # the first builds podman's pause image: a warm-up
                seconds.append(took)
        return seconds
    finally:
        podman.clean_up()


class Footprint:
    """Paths and cgroups podman makes on this machine that did not exist before: removed afterwards."""

    def __init__(self) -> None:
        self.mounts = list(detect_layout().mounts)
        self.paths = [Path(p) for p in PODMAN_FOOTPRINT if not os.path.lexists(p)]
        self.cgroups = [Path(m) / "libpod_parent" for m in self.mounts if not (Path(m) / "libpod_parent").exists()]

    def remove(self, root: Path) -> None:
        """Also what podman left running in the cgroups it made, and mounted under `root`."""
        for top in self.cgroups:
            for procs in top.rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            if line.split()[1].startswith(str(root)):
                subprocess.run(["umount", "-l", line.split()[1]], check=False)
        for path in self.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        for top in self.cgroups:
            for current, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                for _ in range(50):  # killed processes take a moment to leave
                    try:
                        os.rmdir(current)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    print(f"left {current}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--no-pull", action="store_true", help="skip the pull + unpack figure")
    parser.add_argument("--runc-path", default="runc", help="nodeagent.runcPath: runc (the default) or crun")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/runc_vs_podman.py needs root (real cgroups, mounts and containers)")
    binary = ensure_podman()
    with tempfile.TemporaryDirectory(prefix="runc-vs-podman-") as directory:
        root = Path(directory)
        fifos = root / "fifos"
        fifos.mkdir()
        with running_registry(root / "registry") as registry:
            image = push_image(registry, "bench/busybox", "1.0", [busybox_layer()]).reference
            print(f"image {image}; {arguments.pods} pods each, one after the other, hostNetwork", flush=True)
            print(f"measured: {version(arguments.runc_path)}; {version(binary) if binary else 'no podman'}",
                  flush=True)
            nodeagent = bench_nodeagent(root, registry, image, fifos, arguments.pods, arguments.runc_path)
            print(summary(f"nodeagent (runc runtime, {os.path.basename(arguments.runc_path)})", nodeagent),
                  flush=True)
            if binary is None:
                return
            footprint = Footprint()
            (root / "podman").mkdir()
            try:
                podman = bench_podman(binary, root / "podman", registry.host, image, fifos, arguments.pods)
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
                print(f"podman could not run here: {exc}")
                return
            finally:
                footprint.remove(root / "podman")
            print(summary("podman kube play", podman))
            ratio = statistics.median(podman) / statistics.median(nodeagent)
            print(f"nodeagent is {ratio:.1f}x faster at p50 "
                  f"({percentile(podman, .9) / percentile(nodeagent, .9):.1f}x at p90); goal >= 5x: "
                  f"{'met' if ratio >= 5 else 'MISSED'}", flush=True)
    if not arguments.no_pull:
        subprocess.run([sys.executable, str(Path(__file__).with_name("image_pull.py")), "--runs", "5"], check=False)


if __name__ == "__main__":
    main()
