"""What a container reports about itself: its /proc/self/status lines, and whether it could write to `/`.

    REPORT  a shell script: prints the status lines and `root: written|read-only`, then sleeps
    parse(log) -> {"Uid": "0 0 0 0", "CapEff": "00000000a80425fb", ..., "root": "read-only"}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nodeagent.runtime.oci_runtime import KERNEL_CAPABILITIES
from nodeagent.runtime.oci_spec import DEFAULT_CAPABILITIES
from tests.integration.harness import NODE, AgentHarness, wait_for

FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")


def report(probe_file: str) -> str:
    """The script; `probe_file` is the path it tries to create (in `/`), removed at once if it could."""
    pattern = "^(" + "|".join(FIELDS) + "):"
    return (f"grep -E '{pattern}' /proc/self/status; "
            f"if touch {probe_file} 2>/dev/null; then rm -f {probe_file}; echo 'root: written'; "
            "else echo 'root: read-only'; fi; exec sleep 3600")


def parse(log: str) -> dict[str, str]:
    found = {}
    for line in log.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key] = " ".join(value.split())
    return found


def mask(names: Iterable[str]) -> str:
    """/proc/self/status' hex mask of capabilities ("CAP_CHOWN", ...)."""
    bits = 0
    for name in names:
        bits |= 1 << KERNEL_CAPABILITIES.index(name.removeprefix("CAP_"))
    return f"{bits:016x}"


DEFAULT = mask(DEFAULT_CAPABILITIES)
NONE = mask(())


def own_capabilities() -> str:
    with open("/proc/self/status") as handle:
        return next(line.split()[1] for line in handle if line.startswith("CapEff:"))


def status_of(agent: AgentHarness, name: str) -> dict[str, str]:
    """The report of pod `name`'s only container, once it has written it all."""
    return wait_for(lambda: (found := parse(agent.cli("logs", name, check=False).stdout)).get("root") and found,
                    what=f"{name}'s report", timeout=30)


def assert_refused(agent: AgentHarness, name: str, expected: str) -> None:
    """Container `c` of pod `name` waits in CreateContainerConfigError with the kubelet's message, which a
    Warning `Failed` event repeats."""

    def refused() -> dict[str, Any] | None:
        waiting = agent.container_status(name, "c")["state"].get("waiting", {})
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = wait_for(refused, what="CreateContainerConfigError", timeout=30)
    uid = agent.pod(name)["metadata"]["uid"]
    message = f'{expected} (pod: "{name}-{NODE}_default({uid})", container: c)'
    assert waiting["message"] == message
    events = [e for e in agent.events() if e["involvedObject"].get("name") == f"{name}-{NODE}"]
    assert any(e["reason"] == "Failed" and e["type"] == "Warning" and e["message"] == f"Error: {message}"
               for e in events), events
    assert "CreateContainerConfigError" in agent.cli("get", "pods").stdout
