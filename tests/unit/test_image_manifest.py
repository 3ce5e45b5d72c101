"""Manifests, indexes and configs decoded and checked; this platform's manifest picked from an index."""

import json

import pytest

from nodeagent.images.errors import ImagePullError
from nodeagent.images.layout import ImageRecord
from nodeagent.images.manifest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Platform,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
    this_platform,
)

A, B, C, D = (f"sha256:{c * 64}" for c in "abcd")


def entry(digest: str, platform: str, media_type: str = OCI_MANIFEST) -> Descriptor:
    os_name, architecture, *variant = platform.split("/")
    return Descriptor(media_type, digest, 100, Platform(os_name, architecture, variant[0] if variant else ""))


@pytest.mark.parametrize(
    ("entries", "wanted", "chosen"),
    [
        ([entry(A, "linux/arm64/v8"), entry(B, "linux/amd64")], Platform("linux", "amd64"), B),
        ([entry(A, "linux/arm64/v8"), entry(B, "linux/amd64")], Platform("linux", "arm64", "v8"), A),
        ([entry(A, "linux/arm64"), entry(B, "linux/amd64")], Platform("linux", "arm64", "v8"), A),
        ([entry(A, "linux/amd64/v1")], Platform("linux", "amd64"), A),
        ([entry(A, "linux/arm/v6"), entry(B, "linux/arm/v7")], Platform("linux", "arm", "v7"), B),
        ([entry(A, "linux/arm"), entry(B, "linux/arm/v6")], Platform("linux", "arm", "v7"), A),
        ([entry(A, "unknown/unknown"), entry(B, "linux/amd64")], Platform("linux", "amd64"), B),
        ([entry(A, "windows/amd64"), entry(B, "linux/amd64")], Platform("linux", "amd64"), B),
        ([entry(A, "linux/amd64", OCI_INDEX), entry(B, "linux/amd64")], Platform("linux", "amd64"), B),
    ],
    ids=["amd64", "arm64-v8", "arm64-no-variant", "amd64-v1", "arm-v7", "arm-any", "attestation", "windows",
         "nested-index-skipped"],
)
def test_select_platform(entries: list[Descriptor], wanted: Platform, chosen: str) -> None:
    assert select_platform(Index(OCI_INDEX, tuple(entries)), wanted).digest == chosen


def test_no_matching_platform() -> None:
    with pytest.raises(ImagePullError, match="no matching manifest for linux/s390x in the manifest list entries"):
        select_platform(Index(OCI_INDEX, (entry(A, "linux/amd64"),)), Platform("linux", "s390x"))


@pytest.mark.parametrize(("machine", "expected"), [("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"),
                                                   ("armv7l", "linux/arm/v7"), ("riscv64", "linux/riscv64")])
def test_this_platform(machine: str, expected: str) -> None:
    assert str(this_platform(machine)) == expected


def test_media_type_from_the_document_then_the_header_then_its_shape() -> None:
    assert media_type_of(json.dumps({"mediaType": DOCKER_MANIFEST}).encode(), OCI_MANIFEST) == DOCKER_MANIFEST
    assert media_type_of(b"{}", OCI_INDEX + "; charset=utf-8") == OCI_INDEX
    assert media_type_of(b'{"manifests": []}', "application/json") == OCI_INDEX
    assert media_type_of(b'{"layers": []}', None) == OCI_MANIFEST


def manifest(**changes: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": A, "size": 10},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": B, "size": 20}],
    }
    document.update(changes)
    return json.dumps(document).encode()


def test_parse_manifest() -> None:
    parsed = parse_manifest(manifest(), OCI_MANIFEST)
    assert parsed.config.digest == A and [layer.digest for layer in parsed.layers] == [B]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (manifest(schemaVersion=1), "unsupported manifest schema version 1"),
        (manifest(layers=[{"mediaType": "application/x-foo", "digest": B, "size": 1}]), "unsupported media type"),
        (manifest(layers=[{"mediaType": OCI_MANIFEST, "digest": "md5:abc", "size": 1}]), "is not a sha256 digest"),
        (manifest(layers=[{"mediaType": OCI_MANIFEST, "digest": B, "size": -1}]), "must be a non-negative integer"),
        (manifest(config=None), "config must be a descriptor object"),
        (manifest(layers={}), "layers must be a list"),
        (b"not json", "invalid manifest: not JSON"),
        (b"[1]", "invalid manifest: not a JSON object"),
    ],
    ids=["schema1", "layer-type", "digest", "size", "config", "layers", "json", "array"],
)
def test_invalid_manifests(body: bytes, message: str) -> None:
    with pytest.raises(ImagePullError, match=message):
        parse_manifest(body, OCI_MANIFEST)


def test_parse_index_keeps_platforms() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": C, "size": 5, "platform": {"os": "linux", "architecture": "arm64",
                                                                         "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": D, "size": 5}]}).encode()
    index = parse_index(body, OCI_INDEX)
    assert [(d.digest, d.platform) for d in index.manifests] == [(C, Platform("linux", "arm64", "v8")), (D, None)]


def test_parse_config() -> None:
    body = json.dumps({"os": "linux", "architecture": "amd64", "config": {
        "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": None, "Env": ["PATH=/usr/bin"], "WorkingDir": "/app",
        "User": "1000:1000"}, "rootfs": {"type": "layers", "diff_ids": [C, D]}}).encode()
    config = parse_config(body, 2)
    assert (config.entrypoint, config.cmd, config.env) == (("/docker-entrypoint.sh",), (), ("PATH=/usr/bin",))
    assert (config.working_dir, config.user, config.diff_ids) == ("/app", "1000:1000", (C, D))
    assert parse_config(b'{"rootfs": {"diff_ids": []}}', 0).entrypoint == ()
    assert config.stop_signal == ""
    stopped = json.dumps({"config": {"StopSignal": "SIGQUIT"}, "rootfs": {"diff_ids": []}}).encode()
    assert parse_config(stopped, 0).stop_signal == "SIGQUIT"
    with pytest.raises(ImagePullError, match="1 sha256 diff_ids for 2 layers"):
        parse_config(json.dumps({"rootfs": {"diff_ids": [C]}}).encode(), 2)
    with pytest.raises(ImagePullError, match=r"config\.Cmd must be a list of strings"):
        parse_config(json.dumps({"config": {"Cmd": "sh"}, "rootfs": {"diff_ids": []}}).encode(), 0)


def test_an_image_records_stop_signal_survives_and_old_records_have_none() -> None:
    record = ImageRecord("docker.io/library/x:1", C, C, D, (), (), (), (), (), "", "", "2026-01-01T00:00:00Z",
                         stop_signal="USR1")
    assert ImageRecord.from_json(record.to_json()) == record
    old = record.to_json()
    del old["config"]["stopSignal"]  # written by an agent before the field
    assert ImageRecord.from_json(old).stop_signal == ""
