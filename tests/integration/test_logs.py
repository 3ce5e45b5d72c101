"""Container logs with a real agent: a burst is bounded on disk within seconds (containerLogMaxSize x
containerLogMaxFiles, the newest lines kept) for the process and runc runtimes, and reading the tail of a
large log costs the agent little memory."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import yaml

from tests.integration.harness import NODE, AgentHarness, wait_for

MAX_SIZE = 1 << 20
MAX_FILES = 3
BURST_LINES = 250_000  # 100-byte lines: 25 MB of output at once, ~36 MB as CRI records
BURST = (f"yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
         f" | head -n {BURST_LINES}; echo the-last-line; sleep 3600")


def burst_pod(name: str, image: str = "busybox") -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                               {"name": "burst", "image": image, "command": ["/bin/sh", "-c", BURST]}]}})


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


def assert_burst_bounded(agent: AgentHarness, pod: str) -> None:
    directory = container_log_dir(agent, pod, "burst")
    wait_for(lambda: b"the-last-line" in newest_records(directory), timeout=60, what="the burst's last line",
             interval=0.2)
    wait_for(lambda: on_disk(directory) <= MAX_SIZE * MAX_FILES, timeout=5, what="the logs bounded on disk")
    names = sorted(os.listdir(directory))
    assert names[0] == "0.log" and 2 <= len(names) <= MAX_FILES, names
    assert all(name.startswith("0.log.") and name.endswith(".gz") for name in names[1:]), names
    assert b"the-last-line" in newest_records(directory)


def test_a_burst_is_bounded_within_seconds_with_the_newest_lines_kept(harness: AgentHarness) -> None:
    harness.configure({"containerLogMaxSize": "1Mi", "containerLogMaxFiles": MAX_FILES})
    harness.start()
    harness.write("burst.yaml", burst_pod("burst"))
    assert_burst_bounded(harness, "burst")
