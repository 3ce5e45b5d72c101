"""What the process and runc runtimes share in starting a container: the pod's files in its bundle, and the
oom_score_adj the kernel allows this agent to give."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping

log = logging.getLogger(__name__)


def bundle_path(bundle: str, target: str) -> str:
    """The bundle's file for a path in the container: /etc/hosts -> <bundle>/etc_hosts."""
    return os.path.join(bundle, target.strip("/").replace("/", "_"))


def write_bundle_files(bundle: str, files: Mapping[str, str]) -> dict[str, str]:
    """Each {path in the container: content} written as a file of the bundle, for a bind mount (blocking: in a
    thread); {path in the container: file}."""
    written = {}
    for target, content in files.items():
        source = bundle_path(bundle, target)
        with open(source, "w") as handle:
            handle.write(content)
        written[target] = source
    return written


class OomScoreAdj:
    """The plan's oom_score_adj, or where the kernel would refuse a negative one (no CAP_SYS_RESOURCE) the
    nearest allowed value, this agent's own, said once: containerd's restrict_oom_score_adj does the same."""

    def __init__(self, capabilities: Collection[str]) -> None:
        self.capabilities = capabilities
        self._warned = False

    def allowed(self, wanted: int | None) -> int | None:
        if wanted is None or wanted >= 0 or "CAP_SYS_RESOURCE" in self.capabilities:
            return wanted
        with open("/proc/self/oom_score_adj") as handle:
            own = int(handle.read().strip())
        if not self._warned:
            log.warning("oom_score_adj %d needs CAP_SYS_RESOURCE, which this agent lacks: containers get %d, "
                        "the nearest allowed value; the plan's value stays what the kubelet would set",
                        wanted, max(wanted, own))
            self._warned = True
        return max(wanted, own)
