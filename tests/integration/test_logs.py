"""Container logs with a real agent: a burst is bounded on disk within seconds (containerLogMaxSize x
containerLogMaxFiles, the newest lines kept) for the process and runc runtimes, and reading the tail of a
large log costs the agent little memory."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from nodeagent.runtime import logrotate
from tests.integration.containerd import BUSYBOX_IMAGE, Containerd, containerd, cri_images
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.registry import Registry, auth_registry, registry
from tests.integration.test_cri import configure as use_containerd
from tests.integration.test_cri import remove_sandboxes
from tests.integration.test_runc import Images, RuncAgent, images

__all__ = ["auth_registry", "containerd", "cri_images", "images", "registry"]  # the fixtures, imported for pytest

MAX_SIZE = 1 << 20
MAX_FILES = 3
BURST_LINES = 250_000  # 100-byte lines: 25 MB of output at once, ~36 MB as CRI records
LINE = "0123456789" * 10


def burst_pod(name: str, lines: int = BURST_LINES, image: str = "busybox", then: str = "sleep 3600",
              first: str = "") -> str:
    burst = f"{first}yes {LINE} 2>/dev/null | head -n {lines}; echo the-last-line; {then}"
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never", "containers": [
                               {"name": "burst", "image": image, "command": ["/bin/sh", "-c", burst]}]}})


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes: a buffer freed since still counts."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def container_log_dir(agent: AgentHarness, pod: str, container: str) -> Path:
    return wait_for(lambda: next(iter((agent.state / "logs" / "pods").glob(f"default_{pod}-{NODE}_*/{container}")), None),
                    what="the container's log directory")


def on_disk(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.iterdir())


def newest_records(directory: Path) -> bytes:
    """The current file, after the newest rotated one (decompressed)."""
    rotated = sorted(name for name in os.listdir(directory) if name != "0.log")
    newest = gzip.decompress((directory / rotated[-1]).read_bytes()) if rotated else b""
    return newest + (directory / "0.log").read_bytes()


def assert_burst_bounded(agent: AgentHarness, pod: str, within: float = 5) -> None:
    directory = container_log_dir(agent, pod, "burst")
    wait_for(lambda: b"the-last-line" in newest_records(directory), timeout=60, what="the burst's last line",
             interval=0.2)
    wait_for(lambda: on_disk(directory) <= MAX_SIZE * MAX_FILES, timeout=within, what="the logs bounded on disk")
    names = sorted(os.listdir(directory))
    assert names[0] == "0.log" and 2 <= len(names) <= MAX_FILES, names
    assert all(name.startswith("0.log.") and name.endswith(".gz") for name in names[1:]), names
    assert b"the-last-line" in newest_records(directory)
    assert agent.cli("logs", pod, "--tail", "1").stdout == "the-last-line\n"  # in the rotated file, or the new one
    assert agent.cli("logs", pod, "--tail", "4").stdout.startswith(LINE)


LIMITS = {"containerLogMaxSize": "1Mi", "containerLogMaxFiles": MAX_FILES}


def test_a_burst_is_bounded_within_seconds_with_the_newest_lines_kept(harness: AgentHarness) -> None:
    harness.configure(LIMITS)
    harness.start()
    harness.write("burst.yaml", burst_pod("burst"))
    assert_burst_bounded(harness, "burst")


def test_a_burst_after_a_quiet_spell_is_bounded_within_seconds(harness: AgentHarness) -> None:
    """A log unchanged for QUIET_CHECKS checks is sized only every QUIET_EVERY seconds (as the kubelet's every 10 s),
    and the agent lists the logs again only after a change; its next write (inotify) makes it sized every second
    again, so a burst after a quiet spell is bounded as soon as one into a log known to grow."""
    harness.configure(LIMITS)
    harness.start()
    harness.write("late.yaml", burst_pod("late", first=f"sleep {logrotate.QUIET_CHECKS + 2}; "))
    assert_burst_bounded(harness, "late")


def test_the_log_of_a_container_that_ended_is_trimmed_in_place(harness: AgentHarness) -> None:
    harness.configure(LIMITS)
    harness.start()
    harness.write("ended.yaml", burst_pod("ended", then="exit 0"))
    wait_for(lambda: "terminated" in harness.container_status("ended", "burst")["state"], timeout=30, what="the end")
    directory = container_log_dir(harness, "ended", "burst")
    wait_for(lambda: (directory / "0.log").stat().st_size <= MAX_SIZE, timeout=5, what="0.log trimmed")
    assert on_disk(directory) <= MAX_SIZE * MAX_FILES
    assert harness.cli("logs", "ended", "--tail", "1").stdout == "the-last-line\n"


def test_a_burst_under_runc_is_bounded(tmp_path: Path, registry: Registry, images: Images) -> None:
    agent = RuncAgent(tmp_path, [registry])
    try:
        agent.harness.configure(LIMITS)
        agent.harness.start()
        agent.harness.write("burst.yaml", burst_pod("burst", image=images.busybox.reference))
        assert_burst_bounded(agent.harness, "burst")
    finally:
        agent.clean_up()


def test_a_burst_under_containerd_is_bounded(harness: AgentHarness, containerd: Containerd) -> None:
    use_containerd(harness, containerd)
    harness.configure(LIMITS)
    harness.start()
    try:
        harness.write("burst.yaml", burst_pod("burst", image=BUSYBOX_IMAGE))
        assert_burst_bounded(harness, "burst")
    finally:
        harness.stop()
        asyncio.run(remove_sandboxes(containerd))  # before the harness kills the pods' cgroups


def test_the_tail_of_a_large_log_costs_the_agent_little_memory(harness: AgentHarness) -> None:
    harness.configure({"containerLogMaxSize": "1Gi"})
    harness.start()
    harness.write("large.yaml", burst_pod("large", lines=1_100_000))  # 110 MB of output, 160 MB of records
    directory = container_log_dir(harness, "large", "burst")
    wait_for(lambda: (directory / "0.log").read_bytes()[-200:].endswith(b" stdout F the-last-line\n"), timeout=120,
             what="the large log written", interval=0.5)
    assert (directory / "0.log").stat().st_size > 100 * 2**20
    assert harness.process is not None
    before = peak_rss(harness.process.pid)
    assert harness.cli("logs", "large", "--tail", "1").stdout == "the-last-line\n"
    assert harness.cli("logs", "large", "--tail", "4").stdout.startswith(f"{LINE}\n{LINE}\n")
    assert harness.cli("logs", "large", "--limit-bytes", "15").stdout == LINE[:15]
    lines = 0
    with subprocess.Popen([sys.executable, "-m", "nodeagent", "logs", "--socket", str(harness.socket), "large"],
                          stdout=subprocess.PIPE) as whole:  # the whole log streamed, counted as it comes
        stream = whole.stdout
        assert stream is not None
        for block in iter(lambda: stream.read(1 << 20), b""):
            lines += block.count(b"\n")
    assert lines == 1_100_001
    grown = peak_rss(harness.process.pid) - before
    assert grown < 40 * 2**20, f"the agent's peak RSS grew by {grown / 2**20:.0f} MiB"


def test_follow_goes_on_across_rotations(harness: AgentHarness) -> None:
    harness.configure(LIMITS)
    harness.start()
    rounds = (f"for i in 0 1 2; do yes {LINE} 2>/dev/null | head -n 30000; echo mark-$i; sleep 1.5; done; "
              "echo the-end; sleep 3600")
    harness.write("rounds.yaml", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rounds"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "c", "image": "busybox", "command": ["/bin/sh", "-c", rounds]}]}}))
    wait_for(lambda: "running" in harness.container_status("rounds", "c")["state"], what="running")
    lines: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "nodeagent", "logs", "-f", "rounds", "--socket", str(harness.socket)],
                          stdout=subprocess.PIPE, text=True) as follow:
        assert follow.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(follow.stdout or []), daemon=True)
        reader.start()
        try:
            wait_for(lambda: "the-end\n" in lines, timeout=40, what="the follow's last line", interval=0.2)
        finally:
            follow.kill()
    marks = [line.strip() for line in lines if line != LINE + "\n"]
    assert marks == ["mark-0", "mark-1", "mark-2", "the-end"]
    directory = container_log_dir(harness, "rounds", "c")
    assert len(os.listdir(directory)) >= 2  # it did rotate meanwhile
    assert harness.cli("logs", "rounds", "--since", "1h", "--tail", "1").stdout == "the-end\n"
    assert harness.cli("logs", "rounds", "--since-time", "2999-01-01T00:00:00Z").stdout == ""
