"""Registry credentials from a docker config.json (nodeagent.registryAuthFile, the Kubernetes docs'
`regcred` format), matched to an image as the kubelet's keyring matches them. Shared by the image
store (runc) and the cri runtime's PullImage.

    config = load_docker_config(Path("/etc/nodeagent/regcred.json"))
    for credentials in credentials_for_image(config, "registry.example.com:5000/team/app:v1"):
        ...  # try each in turn, as the kubelet does; none: pull anonymously

Formats: config.json / a kubernetes.io/dockerconfigjson secret (`{"auths": {KEY: ENTRY}}`) and the
legacy .dockercfg (`{KEY: ENTRY}`). ENTRY has `auth` (base64 "user:password", which wins) or
`username` and `password`, and may have `identitytoken` and `registrytoken`. `credsStore` and
`credHelpers` (programs that hand out credentials) are not run.

Matching is the kubelet's keyring (pkg/credentialprovider): a KEY is a host with an optional port and
path, a scheme and a /v1/ or /v2/ path prefix being ignored; host labels may be globs
(`*.example.com`), the number of labels and the port must be equal and the KEY's path must prefix the
image's. More specific keys come first (reverse-sorted). Docker Hub images (`busybox`, `team/app`,
`docker.io/...`) also take the credentials of `index.docker.io` (`https://index.docker.io/v1/`).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nodeagent.errors import NodeAgentError

DOCKER_HUB_KEY = "index.docker.io"


class DockerConfigError(NodeAgentError):
    """A docker config.json (pull secret) that cannot be read: the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)  # never printed by accident
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)


def registry_key(key: str) -> str:
    """A config KEY as the keyring indexes it: host[:port][/path], without scheme and /v1/ or /v2/."""
    parts = urlsplit(key if key.startswith(("http://", "https://")) else f"https://{key}")
    path = parts.path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    return parts.netloc + path if path not in ("", "/") else parts.netloc


def parse_docker_config(content: bytes, *, source: str) -> dict[str, list[Credentials]]:
    """KEY (as registry_key() makes it) -> its credentials, from config.json or .dockercfg content."""
    try:
        document = json.loads(content)
    except ValueError as error:
        raise DockerConfigError(f"{source}: not JSON: {error}") from error
    if not isinstance(document, dict):
        raise DockerConfigError(f"{source}: expected a JSON object")
    config_json = "auths" in document or not all(isinstance(value, dict) for value in document.values())
    entries = document.get("auths", {}) if config_json else document  # else the legacy .dockercfg
    if not isinstance(entries, dict):
        raise DockerConfigError(f"{source}: auths: expected a JSON object")
    credentials: dict[str, list[Credentials]] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise DockerConfigError(f"{source}: auths.{key}: expected a JSON object")
        credentials.setdefault(registry_key(key), []).append(credential(entry, where=f"{source}: auths.{key}"))
    return credentials


def credential(entry: Mapping[str, object], *, where: str) -> Credentials:
    def text(name: str) -> str:
        value = entry.get(name, "")
        if not isinstance(value, str):
            raise DockerConfigError(f"{where}.{name}: expected a string")
        return value

    username, password = text("username"), text("password")
    if encoded := text("auth"):
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise DockerConfigError(f"{where}.auth: not base64 of \"user:password\"") from error
        username, separator, password = decoded.partition(":")
        if not separator:
            raise DockerConfigError(f"{where}.auth: not base64 of \"user:password\"")
    return Credentials(username=username, password=password, identity_token=text("identitytoken"),
                      registry_token=text("registrytoken"))


def load_docker_config(path: Path) -> dict[str, list[Credentials]]:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DockerConfigError(f"{path}: {error.strerror or error}") from error
    return parse_docker_config(content, source=str(path))


def key_matches(key: str, image: str) -> bool:
    """The kubelet's URLsMatchStr: same number of host labels (globs allowed), same port, path prefix."""
    glob, target = urlsplit(f"https://{key}"), urlsplit(f"https://{image}")
    glob_host, _, glob_port = glob.netloc.partition(":")
    target_host, _, target_port = target.netloc.partition(":")
    glob_labels, target_labels = glob_host.split("."), target_host.split(".")
    if glob_port != target_port or len(glob_labels) != len(target_labels):
        return False
    if not target.path.startswith(glob.path):
        return False
    return all(fnmatch.fnmatchcase(label, pattern) for pattern, label in zip(glob_labels, target_labels, strict=True))


def is_docker_hub(image: str) -> bool:
    """An image Docker Hub serves: no registry host in its name, or docker.io / index.docker.io."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash or first in ("docker.io", "index.docker.io"):
        return True
    return not any(c in first for c in ".:")


def credentials_for_image(config: Mapping[str, list[Credentials]], image: str) -> list[Credentials]:
    """Every credential that applies to the image, most specific key first; empty: pull anonymously."""
    matched = [cred for key in sorted(config, reverse=True) if key_matches(key, image) for cred in config[key]]
    if not matched and is_docker_hub(image):
        matched = list(config.get(DOCKER_HUB_KEY, []))
    return matched
