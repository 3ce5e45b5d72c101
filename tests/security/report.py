"""What a container reports about itself: its /proc/self/status lines, and whether it could write to `/`.

    REPORT  a shell script: prints the status lines and `root: written|read-only`, then sleeps
    parse(log) -> {"Uid": "0 0 0 0", "CapEff": "00000000a80425fb", ..., "root": "read-only"}
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.runtime.oci_runtime import KERNEL_CAPABILITIES
from nodeagent.runtime.oci_spec import DEFAULT_CAPABILITIES

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
