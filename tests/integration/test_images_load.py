"""`nodeagent images load` and `nodeagent images pull`: images into the store without a registry, and ahead
of time. The archives are built here, in the three formats, from busybox-static."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.cli.images import human_size
from nodeagent.cli.main import cli
from nodeagent.images.archive import LayoutSource, open_layout
from nodeagent.images.manifest import Descriptor, this_platform
from nodeagent.images.progress import Transferred, Watched
from nodeagent.images.reference import parse_reference
from nodeagent.images.store import ImageStore
from tests.integration.images import (
    Entry,
    Layer,
    busybox_layer,
    image_config,
    make_tar,
    manifest_bytes,
    push_image,
    sha256,
)
from tests.integration.registry import Registry, registry  # noqa: F401

OCI_NAME = "nodeagent.test/loaded:oci"
DOCKER_NAME = "nodeagent.test/loaded:docker"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "nodeagent.yaml"
    path.write_text(f"nodeagent:\n  stateDir: {tmp_path / 'state'}\n")
    return path


def layers() -> list[Layer]:
    extra = make_tar([Entry("etc", "dir", mode=0o755), Entry("etc/loaded", data=b"from an archive\n")])
    return [busybox_layer(), Layer(extra, extra, "application/vnd.oci.image.layer.v1.tar")]


def config_of(image_layers: list[Layer], diff_ids: list[str] | None = None) -> bytes:
    document = json.loads(image_config(image_layers, architecture=this_platform().architecture))
    if diff_ids is not None:
        document["rootfs"]["diff_ids"] = diff_ids
    return json.dumps(document).encode()


def oci_layout(directory: Path, *, name: str = OCI_NAME, corrupt_layer: bool = False,
               config: bytes | None = None) -> Path:
    """An OCI image layout directory: oci-layout, index.json (the name in containerd's annotation), blobs."""
    image_layers = layers()
    config = config or config_of(image_layers)
    manifest = manifest_bytes(config, image_layers)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (config, manifest, *(layer.blob for layer in image_layers)):
        (blobs / sha256(blob)[7:]).write_bytes(blob)
    if corrupt_layer:  # the second layer's bytes changed after the manifest named them
        target = blobs / image_layers[1].digest[7:]
        target.write_bytes(target.read_bytes().replace(b"from an archive", b"FROM AN ARCHIVE"))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "oci"}}]}))
    return directory


def tar_of(directory: Path, output: Path) -> Path:
    """`oci-archive`: the layout as a tar, as skopeo and podman write it."""
    with tarfile.open(output, "w") as archive:
        for path in sorted(directory.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return output


def docker_save(output: Path) -> Path:
    """A `docker save` archive as Docker before 25 wrote it: manifest.json, <id>.json, <layer>/layer.tar
    (uncompressed); the busybox layer repeated on top, as a symbolic link to the first one's tar."""
    tars = [layer.tar for layer in layers()]
    config = config_of([Layer(tar, tar) for tar in [*tars, tars[0]]])
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    directories = [f"{position:064x}" for position in range(3)]
    members: list[tuple[str, bytes | None, str | None]] = [(config_name, config, None)]
    for directory, tar in zip(directories, tars, strict=False):
        members += [(directory, None, None), (f"{directory}/layer.tar", tar, None), (f"{directory}/VERSION", b"1.0", None)]
    members += [(directories[2], None, None), (f"{directories[2]}/layer.tar", None, f"../{directories[0]}/layer.tar")]
    manifest = [{"Config": config_name, "RepoTags": [DOCKER_NAME],
                 "Layers": [f"{directory}/layer.tar" for directory in directories]}]
    members.append(("manifest.json", json.dumps(manifest).encode(), None))
    members.append(("repositories", json.dumps({"nodeagent.test/loaded": {"docker": directories[2]}}).encode(), None))
    with tarfile.open(output, "w") as archive:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
            elif data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            archive.addfile(info, None if data is None else io.BytesIO(data))
    return output


def stored(config: Path) -> dict[str, list[str]]:
    """What the store holds: its image references, blobs, layers and leftovers."""
    root = config.parent / "state" / "images"
    listing = {part: sorted(os.listdir(root / part)) if (root / part).exists() else []
               for part in ("blobs/sha256", "layers/sha256", "tmp")}
    records = root / "images"
    listing["images"] = sorted(json.loads(path.read_text())["reference"] for path in records.glob("*.json")) \
        if records.exists() else []
    return listing


def load(config: Path, source: str, stdin: bytes | None = None) -> str:
    result = CliRunner().invoke(cli, ["images", "load", "--config", str(config), source], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def image_content(config: Path, reference: str) -> Path:
    """The loaded image's layers exist as the runc runtime reads them; the top one's /etc/loaded returned."""
    image = asyncio.run(ImageStore(str(config.parent / "state" / "images")).get(reference))
    assert image is not None, f"{reference} is not in the store"
    assert os.path.isfile(os.path.join(image.layers[0], "bin", "busybox"))
    assert image.cmd == ("sh",)
    return Path(image.layers[1]) / "etc" / "loaded"


def test_load_an_oci_layout_directory(tmp_path: Path, config: Path) -> None:
    output = load(config, str(oci_layout(tmp_path / "layout")))
    reference = str(parse_reference(OCI_NAME))
    assert output.startswith(f"Loaded image: {reference} (sha256:")
    assert image_content(config, OCI_NAME).read_text() == "from an archive\n"
    assert stored(config)["images"] == [reference] and stored(config)["tmp"] == []


def test_load_an_oci_archive_from_stdin_gzipped(tmp_path: Path, config: Path) -> None:
    archive = tar_of(oci_layout(tmp_path / "layout"), tmp_path / "image.tar")
    load(config, "-", stdin=gzip.compress(archive.read_bytes()))
    assert image_content(config, OCI_NAME).read_text() == "from an archive\n"
    assert stored(config)["tmp"] == []


def test_load_a_docker_save_archive(tmp_path: Path, config: Path) -> None:
    output = load(config, str(docker_save(tmp_path / "saved.tar")))
    assert output.startswith(f"Loaded image: {parse_reference(DOCKER_NAME)} (sha256:")
    assert image_content(config, DOCKER_NAME).read_text() == "from an archive\n"
    listed = CliRunner().invoke(cli, ["images", "--config", str(config)]).output
    assert "nodeagent.test/loaded" in listed and "docker" in listed
    # loading again changes nothing and adds nothing
    before = stored(config)
    load(config, str(tmp_path / "saved.tar"))
    assert stored(config) == before


@pytest.mark.parametrize("fault", ["layer bytes", "diff_id", "missing blob", "not an archive"])
def test_a_corrupt_archive_adds_nothing(tmp_path: Path, config: Path, fault: str) -> None:
    if fault == "layer bytes":
        source, expected = tar_of(oci_layout(tmp_path / "l", corrupt_layer=True), tmp_path / "a.tar"), "digest mismatch"
    elif fault == "diff_id":  # every blob matches its digest, but the config names other content
        wrong = config_of(layers(), [busybox_layer().diff_id, sha256(b"other")])
        source, expected = tar_of(oci_layout(tmp_path / "l", config=wrong), tmp_path / "a.tar"), "does not match"
    elif fault == "missing blob":
        layout = oci_layout(tmp_path / "l")
        (layout / "blobs" / "sha256" / layers()[1].digest[7:]).unlink()
        source, expected = layout, "missing from the archive"
    else:
        source = tmp_path / "a.tar"
        source.write_bytes(b"this is not a tar" * 100)
        expected = "not a tar archive"
    result = CliRunner().invoke(cli, ["images", "load", "--config", str(config), str(source)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: loading {source}: ") and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert stored(config) == {"blobs/sha256": [], "layers/sha256": [], "tmp": [], "images": []}


def test_a_name_is_needed(tmp_path: Path, config: Path) -> None:
    layout = oci_layout(tmp_path / "l")
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "latest"}  # a tag, no name
    (layout / "index.json").write_text(json.dumps(index))
    result = CliRunner().invoke(cli, ["images", "load", "--config", str(config), str(layout)])
    assert result.exit_code == 1 and "names no image" in result.output, result.output


def test_progress_counts_layers_and_bytes(tmp_path: Path) -> None:
    layout = open_layout(str(oci_layout(tmp_path / "layout")), str(tmp_path / "unused"))
    reports: list[Transferred] = []
    source = Watched(LayoutSource(layout), reports.append, interval=0.001)
    reference = layout.images[0][0]

    async def download_all() -> None:
        manifest = json.loads((await source.fetch_manifest(reference)).body)
        for position, layer in enumerate(manifest["layers"]):
            await source.download_blob(reference, Descriptor(layer["mediaType"], layer["digest"], layer["size"]),
                                       str(tmp_path / f"blob{position}"))

    asyncio.run(download_all())
    total = sum(len(layer.blob) for layer in layers())
    assert reports[-1] == Transferred(2, 2, total, total)
    assert reports[0] == Transferred(0, 1, 0, len(busybox_layer().blob))


def test_pull_ahead_of_time(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    config = tmp_path / "nodeagent.yaml"
    config.write_text(f"nodeagent:\n  stateDir: {tmp_path / 'state'}\n  insecureRegistries: [{registry.host}]\n")
    pushed = push_image(registry, "ahead/busybox", "1.0", [busybox_layer()])
    result = CliRunner().invoke(cli, ["images", "pull", "--config", str(config), pushed.reference])
    assert result.exit_code == 0, result.output
    assert result.output == f"{pushed.reference}: {pushed.digest}\n"  # no progress: not a terminal
    assert stored(config)["images"] == [pushed.reference]
    failed = CliRunner().invoke(cli, ["images", "pull", "--config", str(config), f"{registry.host}/ahead/none:1"])
    assert failed.exit_code == 1 and failed.output.startswith(f"error: pulling {registry.host}/ahead/none:1: ")


def test_progress_on_a_terminal_only(tmp_path: Path, config: Path) -> None:
    """On a terminal, standard error shows the layers and bytes as they go; in a script (a pipe), nothing."""
    archive = tar_of(oci_layout(tmp_path / "layout"), tmp_path / "image.tar")
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "nodeagent", "images", "load", "--config", str(config),
                               str(archive)], stdout=subprocess.PIPE, stderr=terminal, timeout=60, check=True)
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed and drained
            while chunk := os.read(controller, 4096):
                shown += chunk
    finally:
        os.close(controller)
    total = sum(len(layer.blob) for layer in layers())
    assert b"\r0/1 layers, 0B/" in shown and f"\r2/2 layers, {human_size(total)}/{human_size(total)}".encode() in shown
    assert done.stdout.decode().startswith("Loaded image: ")
    other = config.parent / "other.yaml"  # a new store: the layers are copied again, with stderr a pipe
    other.write_text(f"nodeagent:\n  stateDir: {config.parent / 'other'}\n")
    piped = subprocess.run([sys.executable, "-m", "nodeagent", "images", "load", "--config", str(other), str(archive)],
                           capture_output=True, timeout=60, check=True)
    assert piped.stderr == b"" and piped.stdout.startswith(b"Loaded image: ")


@pytest.mark.parametrize(("member", "link", "expected"), [
    ("../outside", None, "leaves the archive"),
    ("/etc/absolute", None, "leaves the archive"),
    ("manifest.json", None, "leaves the archive"),  # a docker save layer named ../../etc/passwd
    ("etc", "/etc", "under a symbolic link"),
])
def test_a_hostile_archive_reads_and_writes_nothing_outside(tmp_path: Path, config: Path, member: str,
                                                            link: str | None, expected: str) -> None:
    """Names leaving the archive, and docker save layers through links to this machine's files, are refused."""
    source = tmp_path / "hostile.tar"
    with tarfile.open(source, "w") as archive:
        if link is not None:
            info = tarfile.TarInfo(member)
            info.type, info.linkname = tarfile.SYMTYPE, link
            archive.addfile(info)
            member = "manifest.json"
        layers_named = ["etc/passwd"] if link is not None else ["../../etc/passwd"]
        data = json.dumps([{"Config": "c.json", "RepoTags": ["x/y:1"], "Layers": layers_named}]).encode() \
            if member == "manifest.json" else b"x"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("c.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    result = CliRunner().invoke(cli, ["images", "load", "--config", str(config), str(source)])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert not (tmp_path.parent / "outside").exists()
    assert stored(config)["images"] == [] and stored(config)["tmp"] == []
