"""Pod volumes without root: emptyDir under the state directory, hostPath type checks, mount points made for
host-process containers and removed with the pod."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nodeagent.agent import volumes
from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import Mount
from tests.conftest import load_pod
from tests.fakes.pod import NODE


def pod_with(volume: str, mount: str = "") -> str:
    return ("apiVersion: v1\nkind: Pod\nmetadata: {name: v, namespace: default}\n"
            f"spec:\n  containers:\n  - name: c\n    image: busybox\n{mount}  volumes:\n{volume}")


async def test_an_empty_dir_is_made_under_the_state_directory_and_removed_with_the_pod(tmp_path: Path) -> None:
    pod = load_pod(pod_with("  - {name: data, emptyDir: {}}\n",
                            "    volumeMounts: [{name: data, mountPath: /data}]\n"))
    made = await volumes.set_up(str(tmp_path), pod, NODE)
    path = made.paths["data"]
    assert path == str(tmp_path / "pods" / pod.uid / "volumes" / volumes.EMPTY_DIR / "data")
    assert os.stat(path).st_mode & 0o777 == 0o777
    container = pod.pod.all_containers()[0]
    assert made.mounts(container) == (Mount(path, "/data", False),)
    await made.prepare_subpaths(container)  # no subPath: nothing to do
    await volumes.tear_down(str(tmp_path), pod.uid)
    assert not os.path.exists(volumes.pod_dir(str(tmp_path), pod.uid))


@pytest.mark.parametrize(("kind", "make", "error"), [
    ("Directory", "dir", None),
    ("Directory", "file", "is not a directory"),
    ("Directory", None, "does not exist"),
    ("File", "file", None),
    ("File", "dir", "is not a file"),
    ("Socket", "file", "is not a socket file"),
    ("Socket", "socket", None),
    ("CharDevice", "file", "is not a character device"),
    ("BlockDevice", "file", "is not a block device"),
    ("", None, None),
])
async def test_host_path_types_are_checked(tmp_path: Path, kind: str, make: str | None, error: str | None) -> None:
    target = tmp_path / "target"
    if make == "dir":
        target.mkdir()
    elif make == "file":
        target.write_text("")
    elif make == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))
        listener.close()
    pod = load_pod(pod_with(f"  - name: h\n    hostPath: {{path: {target}, type: \"{kind}\"}}\n"))
    if error is None:
        made = await volumes.set_up(str(tmp_path / "state"), pod, NODE)
        assert made.paths["h"] == str(target)
    else:
        with pytest.raises(volumes.VolumeError, match=error):
            await volumes.set_up(str(tmp_path / "state"), pod, NODE)


@pytest.mark.parametrize(("kind", "directory"), [("DirectoryOrCreate", True), ("FileOrCreate", False)])
async def test_or_create_types_make_what_is_missing(tmp_path: Path, kind: str, directory: bool) -> None:
    target = tmp_path / "new" / "thing"
    pod = load_pod(pod_with(f"  - name: h\n    hostPath: {{path: {target}, type: {kind}}}\n"))
    await volumes.set_up(str(tmp_path / "state"), pod, NODE)
    assert target.is_dir() is directory and target.exists()


def test_mount_points_are_made_noted_and_removed_when_still_empty(tmp_path: Path) -> None:
    source_dir = tmp_path / "src-dir"
    source_dir.mkdir()
    source_file = tmp_path / "src-file"
    source_file.write_text("x")
    pod_dir = tmp_path / "pod"
    targets = tmp_path / "host"
    mounts = (Mount(str(source_dir), str(targets / "a" / "dir")), Mount(str(source_file), str(targets / "b" / "f")))
    volumes.ensure_mount_points(str(pod_dir), mounts)
    assert (targets / "a" / "dir").is_dir() and (targets / "b" / "f").is_file()
    (targets / "b" / "kept").write_text("used by someone else")
    volumes.remove_mount_points(str(pod_dir))
    assert not (targets / "a").exists()
    assert not (targets / "b" / "f").exists()
    assert (targets / "b" / "kept").exists()  # not empty: not ours to remove
    volumes.remove_mount_points(str(tmp_path / "nothing-noted"))  # no file: nothing to do


def test_a_mount_point_of_the_wrong_kind_is_a_run_container_error(tmp_path: Path) -> None:
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory must be")
    with pytest.raises(RuntimeStartError, match="not a directory") as caught:
        volumes.ensure_mount_points(str(tmp_path / "pod"), (Mount(str(source_dir), str(blocker)),))
    assert caught.value.reason == "RunContainerError"
