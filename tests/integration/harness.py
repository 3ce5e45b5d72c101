"""A real nodeagent daemon for a test: its own manifest directory, state directory, socket and cgroupRoot,
and its own "node" network namespace (tests.integration.netns_fixtures), where it makes its bridge,
pod namespaces and nft rules without touching the machine's network.

Everything it creates is removed afterwards, pods and their networks included (the agent leaves pods
running when it stops, as on a real node), even when the test fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil
import yaml

from nodeagent.cgroups.detect import detect_layout
from nodeagent.cgroups.driver import CgroupfsDriver
from nodeagent.cgroups.fs1 import V1Hierarchy
from nodeagent.cgroups.fs2 import V2Hierarchy
from nodeagent.cli.client import AgentClient
from nodeagent.errors import NodeAgentError
from nodeagent.network.model import NETNS_DIR, netns_name
from nodeagent.network.pods import PodNetworks
from tests.integration.netns_fixtures import Node, create_node

T = TypeVar("T")
Falsy = Literal[False, ""] | None  # what `check` answers until it holds: `a and b and value` reads well
NODE = "testnode"


def cgroup_driver() -> CgroupfsDriver:
    layout = detect_layout()
    if layout.version == 2:
        assert layout.v2_mount is not None
        return CgroupfsDriver(V2Hierarchy(layout.v2_mount))
    return CgroupfsDriver(V1Hierarchy(layout.v1_mounts, runtime_mounts=layout.mounts))


def free_port() -> int:
    """A TCP port free on the loopback now (for the agent's Kubernetes API: never the default port, which
    agents of parallel tests in the machine's network namespace would share)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], T | Falsy], *, timeout: float = 15.0, what: str = "condition",
             interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (NodeAgentError, KeyError, IndexError, StopIteration, OSError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else ""))


TERMINATION_LOG = "/dev/termination-log"


class AgentHarness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "manifests"
        self.state = root / "state"
        self.socket = root / "nodeagent.sock"
        self.log_path = root / "agent.log"
        self.config_path = root / "config.yaml"
        self.cgroup_root = f"/nodeagent-test-{secrets.token_hex(4)}"
        self.manifests.mkdir()
        self.config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "staticPodPath": str(self.manifests), "fileCheckFrequency": "2s", "cgroupRoot": self.cgroup_root,
            "cgroupDriver": "cgroupfs",
            "nodeagent": {"stateDir": str(self.state), "socket": str(self.socket), "nodeName": NODE,
                          "logLevel": "DEBUG", "apiBindAddress": f"127.0.0.1:{free_port()}"},
        }
        self.configure({})
        self.node: Node | None = create_node(root / "node")
        self.netns: str | None = None  # another namespace to run in (use_netns)
        self.process: subprocess.Popen[bytes] | None = None
        self.client = AgentClient(str(self.socket))
        self.cgroups = cgroup_driver()
        # the process runtime keeps the termination message target it makes on the host (every pod may mount it)
        self._made_termination_log = not os.path.lexists(TERMINATION_LOG)

    def configure(self, extra: dict[str, Any]) -> None:
        """Merge settings into the configuration file (one level deep, for `nodeagent:`)."""
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(self.config.get(key), dict):
                self.config[key] = {**self.config[key], **value}
            else:
                self.config[key] = value
        self.config_path.write_text(yaml.safe_dump(self.config))

    def use_host_network(self) -> None:
        """Run the agent in the machine's network namespace (to reach a server on the test's loopback),
        with pod networks off so that it creates nothing there: every pod shares the node's network."""
        self.configure({"nodeagent": {"network": {"enabled": False}}})
        self._remove_node()

    def use_netns(self, path: str) -> None:
        """Run the agent in a namespace the test made otherwise (a containerd's, to reach its pods)."""
        self._remove_node()
        self.netns = path

    # -- the daemon ---------------------------------------------------------------------------------

    def start(self, env: dict[str, str] | None = None, *, wait: bool = True) -> None:
        """Start the agent and wait for its API (`wait=False`: only start it, e.g. while its runtime is away)."""
        where = self.node.path if self.node is not None else self.netns
        netns = ["nsenter", f"--net={where}", "--"] if where is not None else []
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*netns, sys.executable, "-m", "nodeagent", "run", "--config", str(self.config_path)], stdout=log,
                stderr=log, env={**os.environ, **(env or {})})
        if wait:
            self.wait_for_api()

    def wait_for_api(self) -> None:
        wait_for(lambda: self._still_running() and self.socket.exists() and self.client.get("/api/v1/pods"),
                 what="the agent's API", timeout=20)

    def _still_running(self) -> bool:
        assert self.process is not None
        if (code := self.process.poll()) is not None:
            raise AssertionError(f"the agent exited with {code}:\n{self.agent_log()[-2000:]}")
        return True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def clean_up(self) -> None:
        """Stop the agent, then kill and remove everything under the test's cgroupRoot and state, and the
        pod networks with the node's namespace."""
        self.stop()
        try:
            self.cgroups._remove_all([self.cgroup_root])
        finally:
            for pid in self.outside_processes():  # the safety net: they are this test's
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pod_netns = self._pod_netns()  # before the unmounts: a test may have mounted a tmpfs on the state
            for line in Path("/proc/self/mounts").read_text().splitlines():
                target = line.split()[1]
                if target.startswith(str(self.root)):
                    subprocess.run(["umount", "-l", target], check=False)
            if self._made_termination_log and os.path.isfile(TERMINATION_LOG) and not os.path.getsize(TERMINATION_LOG):
                os.unlink(TERMINATION_LOG)
            self._remove_node(pod_netns)

    def outside_processes(self) -> list[int]:
        """Processes of this agent's containers (their command line names its state directory) that are not
        in its cgroups: what a cut-short start can leave, which no cgroup clean-up would find."""
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error, OSError):
                if any(str(self.state) in part for part in proc.info["cmdline"] or []) and \
                        self.cgroup_root not in Path(f"/proc/{proc.pid}/cgroup").read_text():
                    found.append(proc.pid)
        return found

    def _pod_netns(self) -> list[str]:
        """The network namespaces of the pods the agent's leases name (its pods' networks)."""
        try:
            leases = json.loads((self.state / "network" / "leases.json").read_text())["leases"]
            return [netns_name(str(lease["uid"])) for lease in leases]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _remove_node(self, pod_netns: list[str] | None = None) -> None:
        """The pod networks (as the agent removes them), then the node's namespace. `pod_netns`: the pods'
        namespaces, read before the state directory went (a tmpfs a test mounted): removed if still there."""
        node, self.node = self.node, None
        if node is None:
            return
        try:
            if (self.state / "network").exists():
                networks = PodNetworks(state_dir=str(self.state), node_netns=node.path)
                with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the test may run an event loop
                    pool.submit(asyncio.run, networks.remove_all()).result()
        finally:
            for name in pod_netns or []:
                if os.path.lexists(f"{NETNS_DIR}/{name}"):
                    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            node.clean_up()

    def agent_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- manifests ----------------------------------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        """Write a manifest atomically (a dot file renamed into place), as careful tools do."""
        temporary = self.manifests / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.manifests / name)
        return self.manifests / name

    def remove(self, name: str) -> None:
        (self.manifests / name).unlink()

    # -- what the agent says ------------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return self.client.pods()

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.client.pod(namespace, f"{name}-{NODE}")

    def events(self) -> list[dict[str, Any]]:
        return self.client.events()

    def container_status(self, name: str, container: str, namespace: str = "default") -> dict[str, Any]:
        pod = self.pod(name, namespace)
        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
        return next(s for s in statuses if s["name"] == container)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "nodeagent", *args, "--socket", str(self.socket)],
                              capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"nodeagent {' '.join(args)} failed: {done.stderr}")
        return done

    def doctor(self) -> subprocess.CompletedProcess[str]:
        """`nodeagent doctor` on this agent's configuration (it takes no --socket: the file names it)."""
        return subprocess.run([sys.executable, "-m", "nodeagent", "doctor", "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=60, check=False)

    def cli_raw(self, url: str) -> str:
        """A path of the API as text (for /metrics)."""
        return b"".join(self.client.stream(url)).decode()

    def cgroup_path(self, name: str, container: str | None = None, namespace: str = "default") -> str:
        pod = self.pod(name, namespace)
        plan = self.client.get(f"/nodeagent/v1/namespaces/{namespace}/pods/{name}-{NODE}/cgroups")
        for cgroup in plan["cgroups"]:
            if cgroup.get("container") == container:
                return str(cgroup["path"])
        raise KeyError(f"no cgroup for {container} in {pod['metadata']['name']}")

    def kernel(self, path: str, file: str) -> str:
        return self.cgroups.read(path, file).strip()

    def procs(self, path: str) -> list[int]:
        return self.cgroups.procs(path)


def dump(value: Any) -> str:
    return json.dumps(value, indent=1)
