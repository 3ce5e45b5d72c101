"""The image store against real registries on 127.0.0.1 (docker-registry), with images built from busybox."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from nodeagent.images.errors import ImageNeverPullError, ImagePullError
from nodeagent.images.manifest import Platform
from nodeagent.images.overlay import mount_rootfs, unmount
from nodeagent.images.store import ImageStore, PullPolicy
from tests.integration.images import (
    Entry,
    Layer,
    busybox_layer,
    gzip_layer,
    image_config,
    make_tar,
    memhog_layer,
    push_image,
    push_index,
)
from tests.integration.registry import (  # noqa: F401
    CountingProxy,
    Registry,
    auth_registry,
    registry,
    running_registry,
)
from tests.integration.token_auth import TokenRegistry, token_registry  # noqa: F401


def unique_layer(name: str = "unique") -> Layer:
    """A small layer no other test shares: its digest is new to the registry and the store."""
    return gzip_layer([Entry(name, data=secrets.token_bytes(4096), mode=0o600)])


def repository() -> str:
    return f"test/{secrets.token_hex(4)}"


@pytest.fixture
async def store(tmp_path: Path, registry: Registry) -> AsyncIterator[ImageStore]:  # noqa: F811
    async with ImageStore(str(tmp_path / "images"), insecure_registries=[registry.host]) as created:
        yield created


async def test_pull_unpacks_busybox_with_its_config(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    config = image_config([busybox_layer()], entrypoint=["/bin/sh", "-c"], cmd=["echo hi"],
                          env=["PATH=/bin", "GREETING=hello"], working_dir="/tmp", user="65534:65534")
    pushed = push_image(registry, repository(), "1.0", [busybox_layer()], config=config)
    image = await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    assert (image.reference, image.digest, image.image_id) == (pushed.reference, pushed.digest, pushed.config_digest)
    assert (image.entrypoint, image.cmd, image.env) == (("/bin/sh", "-c"), ("echo hi",), ("PATH=/bin", "GREETING=hello"))
    assert (image.working_dir, image.user) == ("/tmp", "65534:65534")
    root = Path(image.layers[0])
    busybox = (root / "bin/busybox").lstat()
    assert stat.S_IMODE(busybox.st_mode) == 0o755 and (busybox.st_uid, busybox.st_gid) == (0, 0)
    assert os.readlink(root / "bin/sh") == "busybox"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert image.repo_digest == f"{registry.host}/{pushed.repository}@{pushed.digest}"
    assert os.listdir(store.layout.tmp) == []


async def test_a_corrupted_blob_is_refused(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    layer = unique_layer()
    pushed = push_image(registry, repository(), "1.0", [busybox_layer(), layer])
    data = registry.blob_data_path(layer.digest)
    tampered = bytearray(data.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF  # same size, one bit pattern changed: only the digest can tell
    data.write_bytes(bytes(tampered))
    with pytest.raises(ImagePullError, match=f"blob {layer.digest}: digest mismatch"):
        await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    assert not store.layout.has_layer(layer.digest)
    assert await store.get(pushed.reference) is None
    assert os.listdir(store.layout.tmp) == []


async def test_if_not_present_needs_no_registry_once_pulled(tmp_path: Path) -> None:
    with running_registry(tmp_path / "private") as private:
        pushed = push_image(private, "test/offline", "1.0", [busybox_layer()])
        async with ImageStore(str(tmp_path / "images"), insecure_registries=[private.host]) as store:
            first = await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
            private.stop()
            assert await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT) == first
            assert await store.ensure(pushed.reference, PullPolicy.NEVER) == first
            with pytest.raises(ImagePullError, match=f"cannot connect to {private.host}: connection refused"):
                await store.ensure(pushed.reference, PullPolicy.ALWAYS)


async def test_always_downloads_only_when_the_tag_moved(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    name = repository()
    push_image(registry, name, "latest", [busybox_layer()])
    async with CountingProxy(registry.host) as proxy, \
            ImageStore(str(tmp_path / "images"), insecure_registries=[proxy.host]) as store:
        reference = f"{proxy.host}/{name}:latest"
        first = await store.ensure(reference, PullPolicy.ALWAYS)
        assert proxy.counts == {"GET manifests": 1, "GET blobs": 2}  # config and the layer
        proxy.counts.clear()
        assert await store.ensure(reference, PullPolicy.ALWAYS) == first
        assert proxy.counts == {"GET manifests": 1}  # checked, nothing downloaded
        proxy.counts.clear()
        moved = push_image(registry, name, "latest", [busybox_layer(), unique_layer()])
        second = await store.ensure(reference, PullPolicy.ALWAYS)
        assert second.digest == moved.digest != first.digest
        assert second.layers[0] == first.layers[0]
        assert proxy.counts == {"GET manifests": 1, "GET blobs": 2}  # the new config and the new layer only


async def test_never_is_an_error_when_absent(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    image = f"{registry.host}/test/never-pulled:1.0"
    with pytest.raises(ImageNeverPullError) as raised:
        await store.ensure(image, "Never")
    assert raised.value.reason == "ErrImageNeverPull"
    assert str(raised.value) == f'Container image "{image}" is not present with pull policy of Never'


async def test_a_missing_tag_reports_the_registry_error(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    pushed = push_image(registry, repository(), "1.0", [busybox_layer()])
    with pytest.raises(ImagePullError) as raised:
        await store.ensure(f"{registry.host}/{pushed.repository}:nope", PullPolicy.IF_NOT_PRESENT)
    assert raised.value.reason == "ErrImagePull"
    assert raised.value.message == f"{registry.host}/{pushed.repository}:nope: manifest unknown: manifest unknown"


@pytest.mark.parametrize("form", ["auth", "username-password"])
async def test_htpasswd_registry_with_regcred_credentials(tmp_path: Path, auth_registry: Registry,  # noqa: F811
                                                          form: str) -> None:
    pushed = push_image(auth_registry, "private/app", "1.0", [busybox_layer()])
    user, password = auth_registry.username or "", auth_registry.password or ""
    entry = ({"auth": base64.b64encode(f"{user}:{password}".encode()).decode()} if form == "auth"
             else {"username": user, "password": password})
    auth_file = tmp_path / "config.json"
    auth_file.write_text(json.dumps({"auths": {auth_registry.host: entry}}))
    async with ImageStore(str(tmp_path / "images"), registry_auth_file=str(auth_file),
                          insecure_registries=[auth_registry.host]) as store:
        image = await store.ensure(pushed.reference, PullPolicy.ALWAYS)
        assert image.digest == pushed.digest


async def test_htpasswd_registry_without_or_with_wrong_credentials(tmp_path: Path,
                                                                   auth_registry: Registry) -> None:  # noqa: F811
    pushed = push_image(auth_registry, "private/app", "1.0", [busybox_layer()])
    async with ImageStore(str(tmp_path / "anonymous"), insecure_registries=[auth_registry.host]) as store:
        with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
            await store.ensure(pushed.reference, PullPolicy.ALWAYS)
    auth_file = tmp_path / "config.json"
    auth_file.write_text(json.dumps({"auths": {f"http://{auth_registry.host}": {"username": "puller", "password": "no"}}}))
    async with ImageStore(str(tmp_path / "wrong"), registry_auth_file=str(auth_file),
                          insecure_registries=[auth_registry.host]) as store:
        with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
            await store.ensure(pushed.reference, PullPolicy.ALWAYS)


async def test_bearer_token_flow(tmp_path: Path, token_registry: TokenRegistry) -> None:  # noqa: F811
    served = token_registry.registry
    private = push_image(served, "team/app", "1.0", [busybox_layer()],
                         authorization=token_registry.push_authorization("team/app"))
    public = push_image(served, "public/app", "1.0", [busybox_layer()],
                        authorization=token_registry.push_authorization("public/app"))
    auth_file = tmp_path / "config.json"
    credentials = base64.b64encode(b"puller:t0ken-pw").decode()
    auth_file.write_text(json.dumps({"auths": {served.host: {"auth": credentials}}}))
    token_registry.issuer.requests.clear()
    async with ImageStore(str(tmp_path / "images"), registry_auth_file=str(auth_file),
                          insecure_registries=[served.host]) as store:
        assert (await store.ensure(private.reference, PullPolicy.ALWAYS)).digest == private.digest
        assert (await store.ensure(private.reference, PullPolicy.ALWAYS)).digest == private.digest
    assert token_registry.issuer.requests == [  # one token, reused for the manifest, config, layer and re-check
        {"scope": "repository:team/app:pull", "service": "nodeagent-test-registry", "account": "puller"}]
    async with ImageStore(str(tmp_path / "anonymous"), insecure_registries=[served.host]) as store:
        assert (await store.ensure(public.reference, PullPolicy.ALWAYS)).digest == public.digest
        with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
            await store.ensure(private.reference, PullPolicy.ALWAYS)


def whiteout_image(registry: Registry) -> tuple[str, Layer, Layer]:  # noqa: F811
    lower = gzip_layer([
        Entry("data", "dir", mode=0o755), Entry("data/keep", data=b"kept\n"), Entry("data/gone", data=b"gone\n"),
        Entry("data/gonedir", "dir", mode=0o755), Entry("data/gonedir/file", data=b"x"),
        Entry("opq", "dir", mode=0o755), Entry("opq/a", data=b"a\n"), Entry("opq/sub", "dir", mode=0o755),
        Entry("opq/sub/b", data=b"b\n"),
    ])
    upper = gzip_layer([
        Entry("data", "dir", mode=0o755), Entry("data/.wh.gone"), Entry("data/.wh.gonedir"),
        Entry("opq", "dir", mode=0o750), Entry("opq/.wh..wh..opq"), Entry("opq/c", data=b"c\n"),
    ])
    pushed = push_image(registry, repository(), "1.0", [busybox_layer(), lower, upper])
    return pushed.reference, lower, upper


async def test_whiteouts_and_opaque_directories_in_the_merged_view(store: ImageStore, registry: Registry,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    reference, _, _ = whiteout_image(registry)
    image = await store.ensure(reference, PullPolicy.IF_NOT_PRESENT)
    top = Path(image.layers[2])
    for name in ("data/gone", "data/gonedir"):
        whiteout = (top / name).lstat()
        assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0), name
    assert not (top / "data/.wh.gone").exists()
    assert os.getxattr(top / "opq", "trusted.overlay.opaque") == b"y"
    assert not (top / "opq/.wh..wh..opq").exists()
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    await mount_rootfs(image.layers, str(upper), str(work), str(merged))
    try:
        assert sorted(os.listdir(merged / "data")) == ["keep"]
        assert sorted(os.listdir(merged / "opq")) == ["c"]
        assert stat.S_IMODE((merged / "opq").stat().st_mode) == 0o750
        assert (merged / "bin/busybox").exists()
        (merged / "data/new").write_text("written")
        assert (upper / "data/new").read_text() == "written"
        assert not (Path(image.layers[1]) / "data/new").exists()
    finally:
        await unmount(str(merged))
    await unmount(str(merged))  # idempotent
    assert not os.path.ismount(merged)


async def test_read_only_root_file_system(store: ImageStore, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    pushed = push_image(registry, repository(), "1.0", [busybox_layer()])
    image = await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    await mount_rootfs(image.layers, str(upper), str(work), str(merged), read_only=True)
    try:
        with pytest.raises(OSError, match="Read-only file system"):
            (merged / "tmp/x").write_text("no")
    finally:
        await unmount(str(merged))


async def test_many_layers_mount_through_short_links(tmp_path: Path) -> None:
    base = tmp_path / ("long-directory-name-" * 4)
    layers = []
    for index in range(100):
        layer = base / f"{index:02d}-{'x' * 60}" / "fs"
        layer.mkdir(parents=True)
        (layer / f"file{index}").write_text(str(index))
        (layer / "top").write_text(str(index))
        layers.append(str(layer))
    assert len(":".join(layers)) > os.sysconf("SC_PAGE_SIZE")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    await mount_rootfs(layers, str(upper), str(work), str(merged))
    try:
        assert len([name for name in os.listdir(merged) if name.startswith("file")]) == 100
        assert (merged / "top").read_text() == "99"  # the last layer is the top-most
        assert sorted(os.listdir(tmp_path)) == sorted([base.name, "upper", "work", "merged"])  # the links went
    finally:
        await unmount(str(merged))


async def test_path_traversal_in_a_layer_is_refused(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    evil = gzip_layer([Entry("etc", "dir", mode=0o755), Entry("etc/../../escaped", data=b"x")])
    pushed = push_image(registry, repository(), "1.0", [evil])
    with pytest.raises(ImagePullError, match=r"refusing 'etc/../../escaped': path outside the layer"):
        await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    assert os.listdir(store.layout.tmp) == []
    assert not (Path(store.layout.root).parent / "escaped").exists()


async def test_prune_keeps_images_in_use_and_shared_layers(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    only_a, only_b, leased_layer = unique_layer("a"), unique_layer("b"), unique_layer("c")
    a = push_image(registry, repository(), "1.0", [busybox_layer(), only_a])
    b = push_image(registry, repository(), "1.0", [busybox_layer(), only_b])
    c = push_image(registry, repository(), "1.0", [leased_layer])
    image_a = await store.ensure(a.reference, PullPolicy.IF_NOT_PRESENT)
    image_b = await store.ensure(b.reference, PullPolicy.IF_NOT_PRESENT)
    await store.ensure(c.reference, PullPolicy.IF_NOT_PRESENT, holder="container-c")
    listed = {summary.reference: summary for summary in await store.list_images()}
    assert set(listed) == {a.reference, b.reference, c.reference}
    assert listed[a.reference].size_bytes > len(Path("/bin/busybox").read_bytes())
    result = await store.prune(in_use_digests={a.digest})
    assert result.removed == (b.reference,)
    assert result.freed_bytes >= 4096
    assert all(os.path.isdir(layer) for layer in image_a.layers)  # busybox is shared: kept
    assert not os.path.exists(image_b.layers[1])
    assert await store.get(c.reference) is not None  # leased
    await store.release("container-c")
    result = await store.prune(in_use_digests={image_a.image_id})  # the image ID counts too
    assert result.removed == (c.reference,)
    assert [summary.reference for summary in await store.list_images()] == [a.reference]


async def test_lease_present_leases_only_an_image_the_store_has_whole(store: ImageStore,
                                                                      registry: Registry) -> None:  # noqa: F811
    """What a runc start takes in its directory thread: a lease that a prune respects, or None (it pulls)."""
    present = push_image(registry, repository(), "1.0", [unique_layer("present")])
    absent = push_image(registry, repository(), "1.0", [unique_layer("absent")])
    pulled = await store.ensure(present.reference, PullPolicy.IF_NOT_PRESENT)
    assert await asyncio.to_thread(store.lease_present, absent.reference, "container-absent") is None
    leased = await asyncio.to_thread(store.lease_present, present.reference, "container-present")
    assert leased == pulled
    assert [lease.holder for lease in store.layout.read_leases()] == ["container-present"]
    assert (await store.prune()).removed == ()  # leased
    await store.release("container-present")
    assert (await store.prune()).removed == (present.reference,)


async def test_ensure_waits_for_a_prune_and_a_cancelled_wait_leaks_no_lock(store: ImageStore,
                                                                        registry: Registry) -> None:  # noqa: F811
    pushed = push_image(registry, repository(), "1.0", [busybox_layer()])
    await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    pruning = await asyncio.to_thread(store.layout.lock, exclusive=True)  # as `nodeagent images prune` would
    try:
        waiting = asyncio.create_task(store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        blocked = asyncio.create_task(store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT))
        await asyncio.sleep(0.1)
        assert not blocked.done()
    finally:
        store.layout.unlock(pruning)
    assert (await blocked).digest == pushed.digest
    result = await asyncio.wait_for(store.prune(in_use_digests={pushed.digest}), 10)  # no shared lock left behind
    assert result.removed == ()


async def test_concurrent_ensures_download_once(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    name = repository()
    push_image(registry, name, "1.0", [busybox_layer(), unique_layer()])
    async with CountingProxy(registry.host) as proxy, \
            ImageStore(str(tmp_path / "images"), insecure_registries=[proxy.host]) as store:
        images = await asyncio.gather(*(store.ensure(f"{proxy.host}/{name}:1.0", PullPolicy.IF_NOT_PRESENT)
                                        for _ in range(6)))
    assert len(set(images)) == 1
    assert proxy.counts == {"GET manifests": 1, "GET blobs": 3}


async def test_an_index_gives_this_platform_manifest(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    name = repository()
    layers = [busybox_layer()]
    amd64 = push_image(registry, name, "amd64", layers, config=image_config(layers, env=["ARCH=amd64"]))
    arm64 = push_image(registry, name, "arm64", layers,
                       config=image_config(layers, env=["ARCH=arm64"], architecture="arm64", variant="v8"))
    index = push_index(registry, name, "multi", [(arm64, "linux/arm64/v8"), (amd64, "linux/amd64")])
    for platform, expected in ((Platform("linux", "amd64"), "ARCH=amd64"), (Platform("linux", "arm64", "v8"), "ARCH=arm64")):
        async with ImageStore(str(tmp_path / str(platform).replace("/", "-")), platform=platform,
                              insecure_registries=[registry.host]) as store:
            image = await store.ensure(index.reference, PullPolicy.IF_NOT_PRESENT)
            assert image.env == (expected,) and image.digest == index.digest
            assert await store.ensure(f"{registry.host}/{name}@{index.digest}", PullPolicy.NEVER) == \
                await store.ensure(f"{registry.host}/{name}@{index.digest}", PullPolicy.IF_NOT_PRESENT)
    async with ImageStore(str(tmp_path / "s390x"), platform=Platform("linux", "s390x"),
                          insecure_registries=[registry.host]) as store:
        with pytest.raises(ImagePullError, match="no matching manifest for linux/s390x in the manifest list entries"):
            await store.ensure(index.reference, PullPolicy.IF_NOT_PRESENT)


async def test_pull_by_digest_and_found_by_digest_after_a_tag_pull(store: ImageStore,
                                                                  registry: Registry) -> None:  # noqa: F811
    pushed = push_image(registry, repository(), "1.0", [busybox_layer()])
    by_tag = await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    by_digest = await store.ensure(pushed.by_digest, PullPolicy.NEVER)
    assert by_digest.layers == by_tag.layers and by_digest.reference == pushed.by_digest


async def test_a_zstd_layer(store: ImageStore, registry: Registry) -> None:  # noqa: F811
    tar = make_tar([Entry("hello", data=b"zstd\n")])
    layer = Layer(tar, zstandard.ZstdCompressor().compress(tar), "application/vnd.oci.image.layer.v1.tar+zstd")
    pushed = push_image(registry, repository(), "1.0", [busybox_layer(), layer])
    image = await store.ensure(pushed.reference, PullPolicy.IF_NOT_PRESENT)
    assert (Path(image.layers[1]) / "hello").read_text() == "zstd\n"


async def test_blob_downloads_follow_redirects_to_storage(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    name = repository()
    push_image(registry, name, "1.0", [busybox_layer(), unique_layer()])
    async with CountingProxy(registry.host, redirect_blobs=True) as proxy, \
            ImageStore(str(tmp_path / "images"), insecure_registries=[proxy.host]) as store:
        image = await store.ensure(f"{proxy.host}/{name}:1.0", PullPolicy.IF_NOT_PRESENT)
    assert len(image.layers) == 2
    assert proxy.counts == {"GET manifests": 1, "GET blobs redirected": 3, "GET storage": 3}


async def test_a_registry_that_never_answers_times_out(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    host = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with ImageStore(str(tmp_path / "images"), insecure_registries=[host], timeout_seconds=0.5) as store:
            with pytest.raises(ImagePullError, match=f"{host}/app:1: not pulled within 0.5s"):
                await store.ensure(f"{host}/app:1", PullPolicy.IF_NOT_PRESENT)
    finally:
        server.close()
        await server.wait_closed()


def test_the_memory_hog_builds_and_allocates(tmp_path: Path) -> None:
    layer = memhog_layer(tmp_path / "memhog")
    binary = tmp_path / "memhog" / "memhog"
    assert len(layer.tar) > 100_000
    process = subprocess.Popen([str(binary), "8"], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"allocated 8 MiB\n"
    finally:
        process.kill()
        process.wait()
