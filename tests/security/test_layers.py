"""Hostile layers served by a real registry, pulled by a real ImageStore: bombs over the budget, whiteouts of
`.` and `..`, hard links out of the layer, sparse files; and the nodev overlay the store's layers are mounted
with. Each refused pull leaves nothing half-imported: no layer, no record, no staging directory."""

from __future__ import annotations

import os
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodeagent.images.budget import UnpackLimits
from nodeagent.images.errors import ImagePullError
from nodeagent.images.overlay import mount_rootfs, unmount
from nodeagent.images.store import ImageStore, PullPolicy
from tests.integration.images import Layer, busybox_layer, push_image
from tests.integration.registry import Registry, registry  # noqa: F401
from tests.security.crafted import info, layer_of, sparse_layer, tar_of, zero_bomb

MI = 1 << 20


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: layers keep their owners, and overlayfs mounts")
    return tmp_path


@pytest.fixture
async def store(root: Path, registry: Registry) -> AsyncIterator[ImageStore]:  # noqa: F811
    limits = UnpackLimits(layer_bytes=16 * MI, pull_bytes=24 * MI)
    async with ImageStore(str(root / "images"), insecure_registries=[registry.host], unpack_limits=limits) as made:
        yield made


def push(registry: Registry, layers: list[Layer]) -> str:  # noqa: F811
    return push_image(registry, f"security/{secrets.token_hex(4)}", "1", layers).reference


def assert_nothing_imported(store: ImageStore) -> None:
    layout = store.layout
    assert os.listdir(layout.tmp) == []  # the staging directories went with the failed pull
    assert os.listdir(layout.layers) == []
    assert os.listdir(layout.images) == []


async def test_a_gzip_bomb_over_the_layer_budget(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    bomb = zero_bomb("bomb", 64 * MI)
    assert len(bomb.blob) < 128 * 1024
    reference = push(registry, [bomb])
    with pytest.raises(ImagePullError) as raised:
        await store.ensure(reference, PullPolicy.ALWAYS)
    assert raised.value.reason == "ErrImagePull"
    assert raised.value.message == (f"{reference}: layer {bomb.digest}: unpacks to more than 16Mi "
                                    "(the limit set by nodeagent.imageMaxLayerSize)")
    assert_nothing_imported(store)


async def test_layers_over_the_pull_budget_together(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    layers = [layer_of(tar_of([(info(f"part{n}", size=10 * MI), secrets.token_bytes(16) + bytes(10 * MI - 16))]))
              for n in range(3)]  # 30 MiB in all: each under 16Mi, together over 24Mi
    reference = push(registry, layers)
    with pytest.raises(ImagePullError, match=r"the image's layers unpack to more than 24Mi \(the limit set by "
                                             r"nodeagent.imageMaxPullSize\)"):
        await store.ensure(reference, PullPolicy.ALWAYS)
    assert os.listdir(store.layout.tmp) == [] and os.listdir(store.layout.images) == []


@pytest.mark.parametrize(("name", "refused"), [("dir/.wh..", "whiteout of '.'"), ("dir/.wh...", "whiteout of '..'"),
                                               (".wh...", "whiteout of '..'")])
async def test_whiteouts_of_dot_and_dotdot(store: ImageStore, registry: Registry, root: Path,  # noqa: F811
                                           name: str, refused: str) -> None:
    bystander = root / "bystander"
    bystander.write_text("must stay")
    layer = layer_of(tar_of([(info("dir", tarfile.DIRTYPE, mode=0o755), b""), (info("dir/file"), b""),
                             (info(name), b"")]))
    reference = push(registry, [layer])
    with pytest.raises(ImagePullError) as raised:
        await store.ensure(reference, PullPolicy.ALWAYS)
    assert raised.value.message == f"{reference}: layer {layer.digest}: refusing {name!r}: {refused}"
    assert bystander.read_text() == "must stay" and os.path.isdir(store.layout.root)
    assert_nothing_imported(store)


async def test_a_hard_link_out_of_the_layer(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    layer = layer_of(tar_of([(info("passwd", tarfile.LNKTYPE, linkname="../../../../etc/passwd"), b"")]))
    reference = push(registry, [layer])
    with pytest.raises(ImagePullError, match=r"refusing 'passwd': hard link to '../../../../etc/passwd': path outside "
                                             r"the layer \(..\)"):
        await store.ensure(reference, PullPolicy.ALWAYS)
    assert_nothing_imported(store)


async def test_a_sparse_file_takes_its_data_not_its_size(store: ImageStore, registry: Registry,  # noqa: F811
                                                         root: Path) -> None:
    layer = sparse_layer(root / "sparse", "disk.img", 8 << 30, 3 << 30, b"superblock")  # 8 GiB, over both limits
    image = await store.ensure(push(registry, [layer]), PullPolicy.ALWAYS)
    unpacked = Path(image.layers[0]) / "disk.img"
    assert unpacked.stat().st_size == 8 << 30
    assert unpacked.stat().st_blocks * 512 <= MI
    with open(unpacked, "rb") as handle:
        handle.seek(3 << 30)
        assert handle.read(10) == b"superblock"


@pytest.mark.parametrize("many", [False, True], ids=["mount(2)", "mount(8) through short links"])
async def test_container_roots_are_mounted_nodev(root: Path, many: bool) -> None:
    """A device node in an image opens nothing through the container's root, whoever opens it."""
    count = 60 if many else 1  # 60 long paths do not fit in a page of mount options
    layers = [root / f"layer-{n:02d}-{'x' * 80}" for n in range(count)]
    for layer in layers:
        layer.mkdir()
    os.mknod(layers[0] / "zero", 0o20666, os.makedev(1, 5))  # /dev/zero's numbers
    upper, work, target = root / "upper", root / "work", root / "rootfs"
    for directory in (upper, work, target):
        directory.mkdir()
    await mount_rootfs([str(layer) for layer in layers], str(upper), str(work), str(target))
    try:
        options = next(line.split()[5].split(",") for line in Path("/proc/self/mountinfo").read_text().splitlines()
                       if line.split()[4] == str(target))
        assert "nodev" in options
        with pytest.raises(PermissionError):
            open(target / "zero", "rb").close()
    finally:
        await unmount(str(target))


async def test_a_normal_image_still_pulls_within_the_budget(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    image = await store.ensure(push(registry, [busybox_layer()]), PullPolicy.ALWAYS)
    assert (Path(image.layers[0]) / "bin/busybox").stat().st_size > 0
