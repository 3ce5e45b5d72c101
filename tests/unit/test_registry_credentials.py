"""Registry credentials from a docker config.json, matched to images as the kubelet's keyring does."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from nodeagent.images.credentials import (
    Credentials,
    DockerConfigError,
    credentials_for_image,
    load_docker_config,
    parse_docker_config,
    registry_key,
)


def auth(user: str, password: str = "pw") -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def users(config: Mapping[str, object], image: str) -> list[str]:
    parsed = parse_docker_config(json.dumps(config).encode(), source="config.json")
    return [a.username for a in credentials_for_image(parsed, image)]


@pytest.mark.parametrize(("key", "expected"), [
    ("registry.example.com", "registry.example.com"),
    ("https://registry.example.com", "registry.example.com"),
    ("http://registry.example.com:5000/", "registry.example.com:5000"),
    ("https://index.docker.io/v1/", "index.docker.io"),
    ("registry.example.com/v2/team", "registry.example.com/team"),
    ("quay.io/coreos", "quay.io/coreos"),
], ids=["host", "https", "http port slash", "docker hub", "v2 prefix", "path"])
def test_registry_key(key: str, expected: str) -> None:
    assert registry_key(key) == expected


@pytest.mark.parametrize(("key", "image", "matches"), [
    ("registry.example.com", "registry.example.com/team/app:v1", True),
    ("registry.example.com", "other.example.com/team/app:v1", False),
    ("registry.example.com", "example.com/app", False),
    ("*.example.com", "registry.example.com/app", True),
    ("*.example.com", "example.com/app", False),
    ("*.example.com", "a.registry.example.com/app", False),
    ("registry.*.com", "registry.example.com/app", True),
    ("*-good.example.com", "prefix-good.example.com/app", True),
    ("*-good.example.com", "prefix-bad.example.com/app", False),
    ("registry.example.com:5000", "registry.example.com:5000/app", True),
    ("registry.example.com:5000", "registry.example.com/app", False),
    ("registry.example.com", "registry.example.com:5000/app", False),
    ("registry.example.com/team", "registry.example.com/team/app@sha256:abc", True),
    ("registry.example.com/team", "registry.example.com/other/app", False),
], ids=["host", "other host", "fewer labels", "glob", "glob needs a label", "glob is one label", "glob inside",
        "partial glob", "partial glob mismatch", "port", "port missing in image", "port missing in key", "path",
        "other path"])
def test_matching(key: str, image: str, matches: bool) -> None:
    assert users({"auths": {key: auth("u")}}, image) == (["u"] if matches else [])


def test_more_specific_keys_first() -> None:
    config = {"auths": {"quay.io": auth("host"), "quay.io/coreos": auth("path"), "*.io": auth("glob")}}
    assert users(config, "quay.io/coreos/etcd:v3") == ["path", "host", "glob"]  # reverse-sorted: "*" < "q"


@pytest.mark.parametrize(("image", "matches"), [
    ("busybox", True), ("library/busybox:1.36", True), ("team/app", True), ("docker.io/library/busybox", True),
    ("index.docker.io/team/app", True), ("quay.io/team/app", False), ("localhost:5000/app", False),
], ids=["short", "library", "user repo", "docker.io", "index.docker.io", "other registry", "local registry"])
def test_docker_hub_credentials(image: str, matches: bool) -> None:
    assert users({"auths": {"https://index.docker.io/v1/": auth("hub")}}, image) == (["hub"] if matches else [])


def test_credential_fields_and_auth_precedence() -> None:
    config = {"auths": {"r.example.com": {**auth("from-auth", "p:with:colons"), "username": "ignored",
                                          "password": "ignored", "identitytoken": "id-token"},
                        "t.example.com": {"username": "plain", "password": "secret", "registrytoken": "bearer"}}}
    parsed = parse_docker_config(json.dumps(config).encode(), source="config.json")
    [first] = credentials_for_image(parsed, "r.example.com/app")
    assert (first.username, first.password, first.identity_token) == ("from-auth", "p:with:colons", "id-token")
    [second] = credentials_for_image(parsed, "t.example.com/app")
    assert (second.username, second.password, second.registry_token) == ("plain", "secret", "bearer")


def test_legacy_dockercfg_and_config_json_without_auths() -> None:
    assert users({"r.example.com": auth("legacy")}, "r.example.com/app") == ["legacy"]
    assert users({"credsStore": "desktop"}, "r.example.com/app") == []


def test_secrets_stay_out_of_repr() -> None:
    assert "secret" not in repr(Credentials(username="u", password="secret", identity_token="secret"))


def test_load_docker_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"r.example.com": auth("u")}}))
    assert list(load_docker_config(path)) == ["r.example.com"]
    with pytest.raises(DockerConfigError, match=r"missing\.json: No such file or directory"):
        load_docker_config(tmp_path / "missing.json")


@pytest.mark.parametrize(("content", "message"), [
    ("{", "config.json: not JSON"),
    ("[]", "config.json: expected a JSON object"),
    ('{"auths": []}', "config.json: auths: expected a JSON object"),
    ('{"auths": {"r": "x"}}', "config.json: auths.r: expected a JSON object"),
    ('{"auths": {"r": {"auth": "not base64!"}}}', 'config.json: auths.r.auth: not base64 of "user:password"'),
    ('{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}', 'config.json: auths.r.auth: not base64 of "user:password"'),
    ('{"auths": {"r": {"username": 1}}}', "config.json: auths.r.username: expected a string"),
], ids=["json", "not an object", "auths", "entry", "auth base64", "auth without colon", "username type"])
def test_invalid_configs(content: str, message: str) -> None:
    with pytest.raises(DockerConfigError) as raised:
        parse_docker_config(content.encode(), source="config.json")
    assert str(raised.value).startswith(message)
