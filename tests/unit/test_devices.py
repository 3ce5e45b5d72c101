"""host_devices: the node's device nodes for a privileged runc container."""

from __future__ import annotations

import os

from nodeagent.runtime.devices import host_devices


def test_the_null_device_and_nothing_from_pts_or_symlinks() -> None:
    found = {device["path"]: device for device in host_devices()}
    null = os.stat("/dev/null")
    assert found["/dev/null"] == {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
                                  "uid": null.st_uid, "gid": null.st_gid}
    assert not any(path.startswith(("/dev/pts/", "/dev/shm/")) for path in found)
    assert "/dev/stdin" not in found and "/dev/console" not in found
