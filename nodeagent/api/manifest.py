"""From manifest bytes to validated, defaulted static pods with their identity.

    load_manifest(b"...", origin="/etc/kubernetes/manifests/web.yaml", source="file", node_name="n1")
        -> ManifestResult(pods=[StaticPod(...)], problems=[...], warnings=[...])

A file is all or nothing for its caller: `problems` lists every error of every pod in it, each with
where it sits and its field path. Nothing in the bytes can make it raise: a failure this module did
not foresee is logged with its traceback and becomes a problem of the file (or of that pod).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from nodeagent.api.decode import DecodeError, RawPod, decode_manifest
from nodeagent.api.fielderrors import duplicate, from_validation_error, invalid
from nodeagent.api.identity import (
    CONFIG_HASH,
    CONFIG_ORIGIN,
    CONFIG_SOURCE,
    DEFAULT_NAMESPACE,
    config_hash,
    static_pod_name,
)
from nodeagent.api.model import Pod
from nodeagent.api.names import dns1123_subdomain
from nodeagent.api.resources import QOSClass, qos_class
from nodeagent.api.unknown import find_unknown_fields
from nodeagent.api.validation import validate_pod
from nodeagent.errors import FieldError

log = logging.getLogger(__name__)

SourceKind = Literal["file", "http"]


@dataclass(frozen=True, slots=True)
class StaticPod:
    """A pod ready to run: defaulted, named for this node, with its UID and where it came from."""

    pod: Pod
    source: SourceKind
    origin: str  # the file path, or the URL without credentials
    config_hash: str
    qos: QOSClass

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid or ""

    @property
    def name(self) -> str:
        return self.pod.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.pod.metadata.namespace or DEFAULT_NAMESPACE

    @property
    def key(self) -> str:
        """namespace/name: what identifies a pod to users and to the conflict rules."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Problem:
    """An error or warning, with where in the file it is ('document 2, items[0]' or '')."""

    where: str
    error: FieldError

    def __str__(self) -> str:
        return f"{self.where}: {self.error}" if self.where else str(self.error)


@dataclass(frozen=True, slots=True)
class ManifestResult:
    pods: list[StaticPod] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(content: bytes, *, origin: str, source: SourceKind, node_name: str) -> ManifestResult:
    try:
        decoded = decode_manifest(content)
    except DecodeError as exc:
        return ManifestResult(problems=[Problem("", FieldError("", str(exc)))])
    except Exception as exc:  # hostile bytes must never end the agent: this file is invalid, that is all
        log.exception("%s: decoding failed unexpectedly", origin)
        return ManifestResult(problems=[Problem("", unexpected(exc))])
    result = ManifestResult(warnings=[Problem("", FieldError("", w)) for w in decoded.warnings])
    names: set[str] = set()
    uids: set[str] = set()
    for raw in decoded.pods:
        where = raw.locate(decoded.documents)
        try:
            pod, errors, warnings = parse_pod(raw)
            static = None if pod is None or errors else make_static(
                pod, raw, origin=origin, source=source, node_name=node_name)
        except Exception as exc:  # as above, for one pod
            log.exception("%s: %s: validating the pod failed unexpectedly", origin, where or "the pod")
            pod, static, errors, warnings = None, None, [unexpected(exc)], []
        result.warnings.extend(Problem(where, w) for w in warnings)
        if pod is None or static is None:
            result.problems.extend(Problem(where, e) for e in errors)
            continue
        name_errors = [invalid("metadata.name", static.name, p) for p in dns1123_subdomain(static.name)]
        if static.key in names:
            name_errors.append(duplicate("metadata.name", pod.metadata.name))
        elif static.uid in uids:  # the pod manager keys pods by UID: two would displace each other
            name_errors.append(duplicate("metadata.uid", static.uid))
        names.add(static.key)
        uids.add(static.uid)
        if name_errors:
            result.problems.extend(Problem(where, e) for e in name_errors)
            continue
        result.pods.append(static)
    return result


def unexpected(exc: Exception) -> FieldError:
    """A failure nobody foresaw, as a problem to report (the traceback goes to the log)."""
    text = str(exc)
    return FieldError("", f"cannot be processed ({type(exc).__name__}{': ' + text[:200] if text else ''}); "
                          "the agent's log has the details")


def parse_pod(raw: RawPod) -> tuple[Pod | None, list[FieldError], list[FieldError]]:
    """(pod, errors, warnings) for one decoded pod object.

    Fields of the wrong type are reported, then left out so that the rest is still validated:
    every error in one pass, none hidden behind another.
    """
    data = raw.data
    typed: list[FieldError] = []
    for attempt in range(3):
        try:
            pod = Pod.model_validate(data)
            break
        except ValidationError as exc:
            found = from_validation_error(exc)
            typed += [error for _, error in found]
            data = copy.deepcopy(data) if attempt == 0 else data
            # A bad list item becomes {} first, so that indexes stay true; if the list holds
            # scalars, {} is wrong too, and then the item goes.
            for parts, _ in sorted(found, key=lambda f: f[0], reverse=True):
                _remove(data, parts, drop_items=attempt > 0)
    else:
        return None, _unique(typed), []
    bad = {error.path for error in typed}
    semantic = [e for e in validate_pod(pod) if not any(_related(e.path, b) for b in bad)]
    return pod, _unique(typed) + semantic, find_unknown_fields(pod)


def _remove(data: Any, parts: tuple[str | int, ...], *, drop_items: bool) -> None:
    for part in parts[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    last = parts[-1] if parts else None
    if isinstance(data, dict) and last in data:
        del data[last]
    elif isinstance(data, list) and isinstance(last, int) and last < len(data):
        if drop_items:
            del data[last]
        else:
            data[last] = {}


def _unique(errors: list[FieldError]) -> list[FieldError]:
    """The first error for each path: later attempts only repeat what the first one found."""
    first: dict[str, FieldError] = {}
    for error in errors:
        first.setdefault(error.path, error)
    return list(first.values())


def _related(path: str, bad: str) -> bool:
    return path == bad or path.startswith((bad + ".", bad + "[")) or bad.startswith((path + ".", path + "["))


def make_static(pod: Pod, raw: RawPod, *, origin: str, source: SourceKind, node_name: str) -> StaticPod:
    """Name the pod for this node and give it the kubelet's UID and config annotations."""
    digest = config_hash(raw.data, node_name=node_name, source=source, origin=origin)
    meta = pod.metadata
    annotations = {**(meta.annotations or {}), CONFIG_HASH: digest, CONFIG_SOURCE: source, CONFIG_ORIGIN: origin}
    named = pod.model_copy(
        update={
            "metadata": meta.model_copy(
                update={
                    "name": static_pod_name(meta.name or "", node_name),
                    "namespace": meta.namespace or DEFAULT_NAMESPACE,
                    "uid": meta.uid or digest,
                    "annotations": annotations,
                }
            ),
            "spec": pod.spec.model_copy(update={"node_name": node_name}),
        }
    )
    return StaticPod(pod=named, source=source, origin=origin, config_hash=digest, qos=qos_class(pod))
