"""The runtime's cgroup driver, from RuntimeConfig or containerd's configuration in Status(verbose)."""

from __future__ import annotations

import json

import pytest

from nodeagent.runtime.cri import api_pb2
from nodeagent.runtime.cri.cgroupdriver import config_cgroup_driver, runtime_cgroup_driver


def containerd_config(runtime_type: str, options: object, *, systemd_cgroup: bool = False,
                      default: str = "runc") -> str:
    runtimes = {"runc": {"runtimeType": runtime_type, "options": options}}
    return json.dumps({"containerd": {"defaultRuntimeName": default, "runtimes": runtimes},
                       "systemdCgroup": systemd_cgroup})


@pytest.mark.parametrize(("info", "expected"), [
    ({"config": containerd_config("io.containerd.runc.v2", {"SystemdCgroup": False})}, "cgroupfs"),
    ({"config": containerd_config("io.containerd.runc.v2", {"SystemdCgroup": True})}, "systemd"),
    ({"config": containerd_config("io.containerd.runc.v2", None)}, "cgroupfs"),
    ({"config": containerd_config("io.containerd.runc.v1", {"SystemdCgroup": True})}, "systemd"),
    ({"config": containerd_config("io.containerd.runtime.v1.linux", None, systemd_cgroup=True)}, "systemd"),
    ({"config": containerd_config("io.containerd.runtime.v1.linux", None)}, "cgroupfs"),
    ({"config": containerd_config("io.containerd.kata.v2", {})}, None),
    ({"config": containerd_config("io.containerd.runc.v2", {}, default="crun")}, None),
    ({"config": "{not json"}, None),
    ({"config": "[]"}, None),
    ({"golang": '"go1.19.8"'}, None),
    ({}, None),
], ids=["runc cgroupfs", "runc systemd", "runc without options", "runc v1 shim", "legacy systemd", "legacy cgroupfs",
        "kata", "default runtime missing", "invalid json", "not an object", "no config", "not verbose"])
def test_runtime_cgroup_driver(info: dict[str, str], expected: str | None) -> None:
    assert runtime_cgroup_driver(api_pb2.StatusResponse(info=info)) == expected


@pytest.mark.parametrize(("response", "expected"), [
    (api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=api_pb2.CGROUPFS)),
     "cgroupfs"),
    (api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=api_pb2.SYSTEMD)),
     "systemd"),
    (api_pb2.RuntimeConfigResponse(), None),
], ids=["cgroupfs", "systemd", "no linux part"])
def test_config_cgroup_driver(response: api_pb2.RuntimeConfigResponse, expected: str | None) -> None:
    assert config_cgroup_driver(response) == expected
