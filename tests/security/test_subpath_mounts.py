"""The subPath bind mounts themselves (nodeagent.agent.subpath, root): what is mounted where, and that a
pod's directory is never removed through a mount."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.agent import subpath, volumes
from nodeagent.api.model import Container
from nodeagent.errors import RuntimeStartError
from tests.security.subpaths import mounts_under


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: bind mounts")
    try:
        yield tmp_path
    finally:
        for point in reversed(mounts_under(tmp_path)):
            subprocess.run(["umount", "-l", point], check=False)


def bind(volume: Path, sub_path: str, target: Path) -> None:
    asyncio.run(subpath.bind(str(volume), sub_path, str(target)))


def test_a_directory_is_mounted_once_however_often_it_is_prepared(root: Path) -> None:
    volume, target = root / "volume", root / "pod" / "volume-subpaths" / "v" / "c" / "0"
    (volume / "data").mkdir(parents=True)
    (volume / "data" / "file").write_text("inside\n")
    bind(volume, "data", target)
    bind(volume, "data", target)  # a restart
    assert mounts_under(root / "pod") == [str(target)]
    assert (target / "file").read_text() == "inside\n"


def test_a_file_is_mounted_on_a_file(root: Path) -> None:
    volume, target = root / "volume", root / "pod" / "t"
    volume.mkdir()
    (volume / "config").write_text("one\n")
    bind(volume, "config", target)
    assert target.is_file() and mounts_under(target) == [str(target)]
    target.write_text("two\n")
    assert (volume / "config").read_text() == "two\n"


def test_a_link_out_of_the_volume_mounts_nothing(root: Path) -> None:
    volume, target, outside = root / "volume", root / "pod" / "t", root / "outside"
    volume.mkdir()
    outside.mkdir()
    (volume / "escape").symlink_to("/")
    (volume / "relative").symlink_to("../outside")
    (volume / "dangling").symlink_to(outside / "missing")
    for name in ("escape", "relative", "dangling", "dangling/deeper"):
        with pytest.raises(subpath.SubPathError):
            bind(volume, name, target)
    assert mounts_under(root) == []
    assert list(outside.iterdir()) == []


def test_a_host_path_volume_that_is_a_link_is_its_target(root: Path) -> None:
    real, link, target = root / "real", root / "link", root / "pod" / "t"
    (real / "data").mkdir(parents=True)
    link.symlink_to(real)
    bind(link, "data", target)
    assert mounts_under(root) == [str(target)]


def test_tear_down_unmounts_before_removing_and_never_reaches_through(root: Path) -> None:
    state = root / "state"
    pod_dir = Path(volumes.pod_dir(str(state), "uid1"))
    outside = root / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "data" / "precious").write_text("keep\n")
    bind(outside, "data", pod_dir / "volume-subpaths" / "v" / "c" / "0")
    memory = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "m"
    memory.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(memory)], check=True)
    asyncio.run(volumes.tear_down(str(state), "uid1"))
    assert not pod_dir.exists()
    assert mounts_under(root) == []
    assert (outside / "data" / "precious").read_text() == "keep\n"


def test_tear_down_finds_the_mounts_of_a_state_directory_under_a_link(root: Path) -> None:
    real = root / "real-state"
    real.mkdir()
    (root / "state").symlink_to(real)
    pod_dir = Path(volumes.pod_dir(str(root / "state"), "uid1"))
    outside = root / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "data" / "precious").write_text("keep\n")
    bind(outside, "data", pod_dir / "volume-subpaths" / "v" / "c" / "0")
    assert mounts_under(real) == [str(real / "pods/uid1/volume-subpaths/v/c/0")]
    asyncio.run(volumes.tear_down(str(root / "state"), "uid1"))
    assert mounts_under(root) == []
    assert (outside / "data" / "precious").read_text() == "keep\n"


def test_a_subpath_made_through_a_link_out_of_the_volume_is_the_kubelets_create_error(root: Path) -> None:
    volume, outside = root / "volume", root / "outside"
    volume.mkdir()
    outside.mkdir()
    (volume / "escape").symlink_to(outside)
    pod = volumes.PodVolumes(str(root / "pod"), {"shared": str(volume)})
    container = Container.model_validate(
        {"name": "victim", "volumeMounts": [{"name": "shared", "mountPath": "/x", "subPath": "escape/new"}]})
    with pytest.raises(RuntimeStartError) as refused:
        asyncio.run(pod.prepare_subpaths(container))
    assert (refused.value.reason, refused.value.message) == (
        "CreateContainerConfigError",
        'failed to create subPath directory for volumeMount "shared" of container "victim"')
    assert list(outside.iterdir()) == [] and mounts_under(root) == []
