"""Helpers of the guest tests: agents started side by side, the plan, systemd's view, the kernel's files.

Runs inside the VM only (tests/vm/run.py boots it): real systemd as PID 1, real cgroup v2 or v1.
Under TCG a Python start costs seconds and an agent's ~20 s, so the timeouts here are generous and
the tests share one agent per driver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nodeagent.plan.paths import to_systemd
from tests.integration.harness import AgentHarness, wait_for

AGENT_START_TIMEOUT_S = 180.0  # an agent imports for ~20 s under TCG, longer when two start at once
SWAPFILE = Path("/swapfile-nodeagent-vm")


class VMAgent(AgentHarness):
    """The project's harness with the VM's patience, and what systemd knows."""

    def __init__(self, root: Path, driver: str, settings: dict[str, Any]) -> None:
        super().__init__(root)
        self.driver = driver
        artifacts = os.environ.get("NODEAGENT_VM_ARTIFACTS")
        if artifacts:  # straight onto the host's share: still there when the VM is stopped mid-test
            self.log_path = Path(artifacts) / f"agent-{root.name}.log"
        self.configure({"cgroupDriver": driver, **settings})
        self._plans: dict[str, list[dict[str, Any]]] = {}

    def spawn(self) -> None:
        """Start the daemon as AgentHarness.start does, without waiting (see wait_ready)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nodeagent", "run", "--config", str(self.config_path)],
                stdout=log, stderr=log, env=dict(os.environ))

    def wait_ready(self) -> None:
        def answering() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the {self.driver} agent exited with {self.process.returncode}:\n"
                                     + self.agent_log()[-3000:])
            return bool(self.socket.exists() and self.client.get("/api/v1/pods"))
        wait_for(answering, timeout=AGENT_START_TIMEOUT_S, what=f"the {self.driver} agent's API", interval=0.5)

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        self.spawn()
        self.wait_ready()

    @property
    def root_slice(self) -> str:
        """The cgroupRoot as systemd's slice (the kubelet's spelling: '-' becomes '_')."""
        return to_systemd((self.cgroup_root.strip("/"),)).rsplit("/", 1)[-1]

    def plan(self, manifest: str) -> list[dict[str, Any]]:
        """`nodeagent plan MANIFEST --config <the agent's> -o json`: every pod of the manifest file."""
        if manifest not in self._plans:
            done = subprocess.run([sys.executable, "-m", "nodeagent", "plan", str(self.manifests / manifest),
                                   "--config", str(self.config_path), "-o", "json"],
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            data = json.loads(done.stdout)
            self._plans[manifest] = data if isinstance(data, list) else [data]
        return self._plans[manifest]

    def pod_plan(self, manifest: str, name: str) -> dict[str, Any]:
        return next(p for p in self.plan(manifest) if p["pod"]["name"] == name)

    def status(self, name: str, namespace: str, container: str) -> dict[str, Any]:
        return self.container_status(name, container, namespace)

    def running(self, name: str, namespace: str, container: str) -> dict[str, Any] | None:
        status = self.status(name, namespace, container)
        return status if "running" in status["state"] else None

    def clean_up(self) -> None:
        """The harness's clean-up (the agent, cgroupfs' tree), then the root slice with all below it."""
        try:
            super().clean_up()
        finally:
            if self.driver == "systemd":
                systemctl("stop", self.root_slice, check=False)
                systemctl("reset-failed", check=False)


def start_all(agents: list[VMAgent]) -> None:
    """Start the agents at once: their ~20 s of imports overlap on the VM's two CPUs."""
    for agent in agents:
        agent.spawn()
    with ThreadPoolExecutor(len(agents)) as pool:
        for future in [pool.submit(agent.wait_ready) for agent in agents]:
            future.result()


# -- systemd ------------------------------------------------------------------------------------------

def systemctl(*args: str, check: bool = True) -> str:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"systemctl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def show(unit: str, *properties: str) -> dict[str, str]:
    output = systemctl("show", unit, *(f"--property={p}" for p in properties))
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def units(pattern: str) -> list[str]:
    """Loaded units matching a pattern, whatever their state (list-units --all)."""
    output = systemctl("list-units", "--all", "--plain", "--no-legend", "--no-pager", pattern)
    return sorted(line.split()[0] for line in output.splitlines() if line.strip())


def unit_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def timespan_us(usec: int) -> str:
    """systemd's format_timespan() at 1 us accuracy, as `systemctl show` prints a time: '700ms', '1s 500ms'."""
    if usec == 0:
        return "0"
    units_us = (("y", 31_557_600_000_000), ("month", 2_629_800_000_000), ("w", 604_800_000_000),
                ("d", 86_400_000_000), ("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000),
                ("ms", 1_000), ("us", 1))
    parts = []
    for name, size in units_us:
        if usec >= size:
            parts.append(f"{usec // size}{name}")
            usec %= size
    return " ".join(parts)


def expected_properties(files: dict[str, str]) -> dict[str, str]:
    """What `systemctl show` must print for a unit given the plan's files (cgroup v2)."""
    expected: dict[str, str] = {}
    if "memory.max" in files:
        expected["MemoryMax"] = "infinity" if files["memory.max"] == "max" else files["memory.max"]
    if "cpu.weight" in files:
        expected["CPUWeight"] = files["cpu.weight"]
    if "cpu.max" in files:
        quota, period = files["cpu.max"].split()
        expected["CPUQuotaPerSecUSec"] = ("infinity" if quota == "max"
                                          else timespan_us(int(quota) * 1_000_000 // int(period)))
    if "pids.max" in files:
        expected["TasksMax"] = "infinity" if files["pids.max"] == "max" else files["pids.max"]
    if "memory.swap.max" in files:
        expected["MemorySwapMax"] = "infinity" if files["memory.swap.max"] == "max" else files["memory.swap.max"]
    return expected


def v1_properties(files: dict[str, str]) -> dict[str, str]:
    """What `systemctl show` must print for a unit given the plan's v1 files."""
    expected = {}
    if "cpu.shares" in files:
        expected["CPUShares"] = files["cpu.shares"]
    if "memory.limit_in_bytes" in files:
        expected["MemoryLimit"] = files["memory.limit_in_bytes"]
    if "cpu.cfs_quota_us" in files and int(files["cpu.cfs_quota_us"]) > 0:
        quota, period = int(files["cpu.cfs_quota_us"]), int(files["cpu.cfs_period_us"])
        expected["CPUQuotaPerSecUSec"] = timespan_us(quota * 1_000_000 // period)
    return expected


# -- the kernel ---------------------------------------------------------------------------------------

def keyed(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


PAGE = 4096
# byte limits the kernel keeps in whole pages (page_counter_memparse): it shows what was written, rounded down
PAGE_ROUNDED = {"memory.max", "memory.swap.max", "memory.min", "memory.high", "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes"}


def as_kernel_shows(name: str, value: str) -> str:
    return str(int(value) // PAGE * PAGE) if name in PAGE_ROUNDED and value.isdigit() else value


def kernel_differences(agent: AgentHarness, cgroups: list[dict[str, Any]]) -> list[str]:
    """Every planned file whose kernel value differs from the plan: 'path file: plan X, kernel Y'."""
    wrong = []
    for cgroup in cgroups:
        for name, value in cgroup["files"].items():
            try:
                actual = agent.kernel(cgroup["path"], name)
            except Exception as exc:  # reported, not raised: every difference at once
                actual = f"unreadable ({exc})"
            if actual != as_kernel_shows(name, value):
                wrong.append(f"{cgroup['path']} {name}: plan {value!r}, kernel {actual!r}")
    return wrong


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, rest = line.split(":", 1)
        number, *unit = rest.split()
        values[name] = int(number) * (1024 if unit else 1)
    return values


def swap_on(size: str) -> None:
    swap_off()
    for argv in (["fallocate", "-l", size, str(SWAPFILE)], ["chmod", "600", str(SWAPFILE)],
                 ["mkswap", "-q", str(SWAPFILE)], ["swapon", str(SWAPFILE)]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)


def swap_off() -> None:
    if SWAPFILE.exists():
        subprocess.run(["swapoff", str(SWAPFILE)], check=False, capture_output=True, timeout=300)
        SWAPFILE.unlink()


def sample(check: Any, *, seconds: float, interval: float = 0.5) -> list[Any]:
    """check() every interval for that long: what it returned each time."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(check())
        time.sleep(interval)
    return seen
