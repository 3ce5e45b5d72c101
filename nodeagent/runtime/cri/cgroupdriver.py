"""Which cgroup driver a CRI runtime uses: "systemd", "cgroupfs", or None when it does not say.

The kubelet and the runtime must use the same driver. Runtimes tell it in one of two ways:
- RuntimeConfig (containerd >= 2.0, CRI-O >= 1.31): `linux.cgroup_driver`;
- Status(verbose=True) (containerd 1.6 and 1.7): `info["config"]` is the CRI plugin's configuration
  as JSON, where the default runtime's options carry runc's `SystemdCgroup`
  (`containerd.runtimes.<defaultRuntimeName>.options.SystemdCgroup`, io.containerd.runc.v1/v2), and
  the top-level `systemdCgroup` serves the legacy io.containerd.runtime.v1.linux.
Other runtime types (kata, gVisor, ...) leave it unknown.
"""

from __future__ import annotations

import json
from typing import Literal

from nodeagent.runtime.cri import api_pb2
from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.errors import CRIError

CgroupDriverName = Literal["systemd", "cgroupfs"]

RUNC_SHIMS = ("io.containerd.runc.v2", "io.containerd.runc.v1")
LEGACY_SHIM = "io.containerd.runtime.v1.linux"


def config_cgroup_driver(response: api_pb2.RuntimeConfigResponse) -> CgroupDriverName | None:
    """The driver a RuntimeConfig response names; None without its linux part."""
    if not response.HasField("linux"):
        return None
    return "cgroupfs" if response.linux.cgroup_driver == api_pb2.CGROUPFS else "systemd"


def runtime_cgroup_driver(status: api_pb2.StatusResponse) -> CgroupDriverName | None:
    """The driver in containerd's configuration as Status(verbose=True) shows it; None when absent."""
    try:
        config = json.loads(status.info["config"])
    except (KeyError, ValueError):
        return None
    containerd = config.get("containerd") if isinstance(config, dict) else None
    if not isinstance(containerd, dict):
        return None
    runtimes = containerd.get("runtimes")
    runtime = runtimes.get(containerd.get("defaultRuntimeName")) if isinstance(runtimes, dict) else None
    if not isinstance(runtime, dict):
        return None
    runtime_type = runtime.get("runtimeType")
    if runtime_type == LEGACY_SHIM:
        return "systemd" if config.get("systemdCgroup") is True else "cgroupfs"
    if runtime_type in RUNC_SHIMS:
        options = runtime.get("options")
        systemd = isinstance(options, dict) and options.get("SystemdCgroup") is True
        return "systemd" if systemd else "cgroupfs"
    return None


async def query_cgroup_driver(client: CRIClient) -> CgroupDriverName | None:
    """Ask the runtime: RuntimeConfig where it is implemented, else Status(verbose=True)."""
    try:
        driver = config_cgroup_driver(await client.runtime_config())
    except CRIError as error:
        if error.code != "UNIMPLEMENTED":
            raise
        driver = None
    return driver or runtime_cgroup_driver(await client.status(verbose=True))
