"""Image references normalised as the kubelet does (distribution/reference), with its error wording."""

import pytest

from nodeagent.images.errors import InvalidImageNameError
from nodeagent.images.reference import Reference, parse_reference

DIGEST = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    ("image", "expected", "normalised"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest"), "docker.io/library/busybox:latest"),
        ("busybox:1.36", Reference("docker.io", "library/busybox", "1.36"), "docker.io/library/busybox:1.36"),
        ("library/busybox", Reference("docker.io", "library/busybox", "latest"), "docker.io/library/busybox:latest"),
        ("myorg/app:v1", Reference("docker.io", "myorg/app", "v1"), "docker.io/myorg/app:v1"),
        ("index.docker.io/library/redis", Reference("docker.io", "library/redis", "latest"),
         "docker.io/library/redis:latest"),
        ("localhost/app", Reference("localhost", "app", "latest"), "localhost/app:latest"),
        ("localhost:5000/app:1", Reference("localhost:5000", "app", "1"), "localhost:5000/app:1"),
        (f"127.0.0.1:5000/team/app@{DIGEST}", Reference("127.0.0.1:5000", "team/app", None, DIGEST),
         f"127.0.0.1:5000/team/app@{DIGEST}"),
        (f"quay.io/team/app:v1@{DIGEST}", Reference("quay.io", "team/app", "v1", DIGEST),
         f"quay.io/team/app:v1@{DIGEST}"),
        ("Registry.Example/app", Reference("Registry.Example", "app", "latest"), "Registry.Example/app:latest"),
        ("[::1]:5000/app", Reference("[::1]:5000", "app", "latest"), "[::1]:5000/app:latest"),
        ("gcr.io/a/b/c_d.e__f-g:T_1.x", Reference("gcr.io", "a/b/c_d.e__f-g", "T_1.x"), "gcr.io/a/b/c_d.e__f-g:T_1.x"),
    ],
    ids=["short", "tag", "library", "org", "index-host", "localhost", "port", "digest", "tag-and-digest",
         "upper-domain", "ipv6", "separators"],
)
def test_normalisation(image: str, expected: Reference, normalised: str) -> None:
    reference = parse_reference(image)
    assert reference == expected
    assert str(reference) == normalised
    assert reference.target == (expected.digest or expected.tag)


def test_docker_hub_api_host() -> None:
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("quay.io/a/b").api_host == "quay.io"


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("Busybox", "repository name must be lowercase"),
        ("busybox:", "invalid reference format"),
        ("", "invalid reference format"),
        (" busybox", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("busybox@sha512:" + "a" * 128, "unsupported digest algorithm: sha512 (only sha256)"),
        ("a/../b", "invalid reference format"),
        ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
        ("reg.io/" + "a" * 250, "repository name must not be more than 255 characters"),
    ],
    ids=["upper", "empty-tag", "empty", "space", "short-digest", "sha512", "dotdot", "hex64", "too-long"],
)
def test_invalid_names(image: str, reason: str) -> None:
    with pytest.raises(InvalidImageNameError) as raised:
        parse_reference(image)
    assert raised.value.reason == "InvalidImageName"
    assert str(raised.value) == f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {reason}'
