"""Property-based fuzzing of the whole manifest path (issue 12): arbitrary YAML/JSON (deep nesting, wrong
types, huge numbers, odd unicode, aliases, raw bytes) through load_manifest and through the URL source
(a real aiohttp server on loopback) never raises, never takes longer than a bound, and never changes a
running pod other than the one it defines (the merge keeps the file pod `web` exactly as it was).

CI runs FUZZ_EXAMPLES examples per test (about a minute in all). For a long run, e.g. 100,000:

    NODEAGENT_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/security/test_fuzz_manifest.py -q

(the pytest timeout grows with the count; hypothesis keeps any failing example in .hypothesis/ and
replays it first on the next run).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nodeagent.api.manifest import ManifestResult, StaticPod, load_manifest
from nodeagent.sources.files import ManifestFile
from nodeagent.sources.http import HttpSource
from nodeagent.sources.merge import Desired, merge_files, merge_sources
from tests.conftest import ReadableSource
from tests.security.urlserver import Fetcher, Recorder, serving

FUZZ_EXAMPLES = int(os.environ.get("NODEAGENT_FUZZ_EXAMPLES", "2000"))
URL_EXAMPLES = max(FUZZ_EXAMPLES // 5, 1)  # each goes over HTTP: slower
BOUND_SECONDS = 5.0  # per example; the inputs are small, so this only fails on a real blow-up (or a hang)
TIMEOUT = max(120, FUZZ_EXAMPLES // 10)

def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


WEB_UID = "0c0ffee0-0000-4000-8000-00000000000a"

BASE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "fuzz", "namespace": "default", "labels": {"app": "fuzz"}, "annotations": {"a": "b"}},
    "spec": {
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "activeDeadlineSeconds": 60,
        "hostNetwork": False, "priority": 0, "dnsPolicy": "ClusterFirst", "hostname": "h",
        "securityContext": {"runAsUser": 1000, "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
        "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}},
                    {"name": "h", "hostPath": {"path": "/tmp", "type": "Directory"}}],
        "initContainers": [{"name": "i", "image": "busybox", "command": ["true"]}],
        "containers": [{
            "name": "c", "image": "busybox:1.36", "command": ["sleep", "1"], "args": ["x"], "workingDir": "/",
            "env": [{"name": "A", "value": "b"}], "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "1e6"}},
            "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": True}],
            "livenessProbe": {"httpGet": {"path": "/", "port": 80, "httpHeaders": [{"name": "X", "value": "y"}]},
                              "periodSeconds": 10, "failureThreshold": 3},
            "readinessProbe": {"exec": {"command": ["true"]}}, "startupProbe": {"tcpSocket": {"port": "http"}},
            "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "privileged": False},
        }],
    },
}


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


PATHS = [path for path in _paths(BASE) if path]
FIELD_NAMES = sorted({part for path in PATHS for part in path if isinstance(part, str)})

odd_text = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(
    ["", "\u202e", "\ufeff", "\x00", "../../etc", "a" * 300, "\U0001f600", "\ud800", "${HOME}", "$(x)", "1e400"])
quantities = st.from_regex(r"[+-]?[0-9.]{0,12}[eEinumkKMGTP]{0,2}[-+]?[0-9]{0,12}", fullmatch=True)
numbers = st.integers() | st.floats() | st.sampled_from(
    [2**63, -(2**63) - 1, 10**100, 10**101, -(10**4000), float("inf"), float("-inf"), float("nan"), 1e308, -0.0])
scalars = st.none() | st.booleans() | numbers | odd_text | quantities
keys = st.sampled_from(FIELD_NAMES) | odd_text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=16)


@dataclass(frozen=True)
class Deep:
    """Maps or lists nested `depth` deep: written into the text by _serialize, so that the test's own
    serializers never recurse that deep (their recursion limit would make the examples flaky)."""

    depth: int
    as_list: bool

    def text(self) -> str:
        if self.as_list:
            return "[" * self.depth + "1" + "]" * self.depth
        return '{"a": ' * self.depth + "1" + "}" * self.depth


deep = st.builds(Deep, st.integers(0, 1500), st.booleans())


def _set(document: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        try:
            document = document[part]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation replaced what led here
    last = path[-1]
    if isinstance(document, list):
        if isinstance(last, int) and last < len(document):
            document[last] = value
    elif isinstance(document, dict):
        document[last] = value


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """The base pod with a few fields replaced by anything, maybe claiming web's name or UID."""
    pod = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 4))):
        _set(pod, draw(st.sampled_from(PATHS)), draw(values | deep))
    if draw(st.booleans()):
        _set(pod, ("metadata", "name"), draw(st.sampled_from(["web", "fuzz", "Web", "web-node1"]) | odd_text))
    if draw(st.booleans()):
        _set(pod, ("metadata", "uid"), draw(st.sampled_from([WEB_UID, "fuzz-uid"]) | odd_text))
    if draw(st.booleans()):
        _set(pod, (draw(keys),), draw(values | deep))  # an unknown or repeated top-level field
    return pod


documents = pods() | values | deep | st.builds(lambda items, kind: {"kind": kind, "apiVersion": "v1", "items": items},
                                              st.lists(pods() | values, max_size=3), st.sampled_from(["List", "PodList"]))


def _serialize(docs: list[Any], form: str) -> bytes:
    nests: list[Deep] = []

    def placeholders(value: Any) -> Any:
        if isinstance(value, Deep):
            nests.append(value)
            return f"DEEPNEST{len(nests) - 1}X"
        if isinstance(value, dict):
            return {key: placeholders(child) for key, child in value.items()}
        if isinstance(value, list):
            return [placeholders(child) for child in value]
        return value

    plain = [placeholders(doc) for doc in docs]
    if form == "json":
        text, quote = json.dumps(plain[0]), '"'
    else:
        text, quote = yaml.safe_dump_all(plain, allow_unicode=form == "yaml-unicode", width=10**9), ""
    for index, nest in enumerate(nests):
        text = text.replace(f"{quote}DEEPNEST{index}X{quote}", nest.text(), 1)
    return text.encode("utf-8", "surrogatepass")


yaml_soup = st.lists(st.sampled_from(
    ["{", "}", "[", "]", ": ", "- ", "\n", "  ", "---\n", "&a ", "*a", "<<: ", "!!python/object:os.system ", "!!binary ",
     "kind: Pod\n", "metadata: {name: web}\n", "spec:\n", "containers: [{name: c, image: x}]\n", '"', "'", "#", "~",
     "? ", "|\n", ">\n", "!!set ", "%YAML 1.1\n", "\t", "1e999", "0x" + "f" * 120, "\ufeff", "&b [*a,*a,*a,*a]\n"]),
    max_size=60).map("".join).map(str.encode)


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["structured", "structured", "structured", "soup", "bytes"]))
    if kind == "soup":
        return draw(yaml_soup)
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    docs = draw(st.lists(documents, min_size=1, max_size=3))
    try:
        return _serialize(docs, draw(st.sampled_from(["json", "yaml", "yaml-unicode"])))
    except (yaml.YAMLError, ValueError):
        assume(False)  # the test's own serializers cannot write it: not an input to try
        raise


def web_pod(root: Path) -> Desired:
    """The running file pod the fuzzed manifests must never change: default/web-node1."""
    (root / "aa-web.yaml").write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: web, uid: {WEB_UID}}}\n"
        "spec:\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n")
    desired = merge_files(ReadableSource(str(root), node_name="node1", frequency_seconds=20).scan(), {})
    assert [p.key for p in desired.pods] == ["default/web-node1"] and not desired.problems
    return desired


def assert_web_unchanged(desired: Desired, web: StaticPod) -> None:
    mine = [p for p in desired.pods if p.key == web.key or p.uid == web.uid]
    assert mine == [web], "a fuzzed manifest displaced or changed the running file pod"
    assert len({p.uid for p in desired.pods}) == len({p.key for p in desired.pods}) == len(desired.pods)


def timed_load(content: bytes, origin: str) -> ManifestResult:
    started = time.monotonic()
    result = load_manifest(content, origin=origin, source="file", node_name="node1")
    took = time.monotonic() - started
    assert took < BOUND_SECONDS, f"{len(content)} bytes took {took:.1f}s"
    assert result.ok or result.problems
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Desired:
    return web_pod(tmp_path_factory.mktemp("fuzz-files"))


@pytest.mark.timeout(TIMEOUT)
@fuzz_settings(FUZZ_EXAMPLES)
@given(content=contents())
def test_any_file_is_loaded_or_reported_and_leaves_other_pods_alone(files: Desired, content: bytes) -> None:
    web = files.pods[0]
    fuzz = timed_load(content, "/m/zz-fuzz.yaml")
    web_file = ManifestFile(web.origin, "web", ManifestResult(pods=[web]))
    desired = merge_files([web_file, ManifestFile("/m/zz-fuzz.yaml", "fuzz", fuzz)], {web.origin: [web]})
    assert_web_unchanged(desired, web)
    assert_web_unchanged(merge_sources(files, fuzz.pods if fuzz.ok else []), web)


@pytest.mark.timeout(TIMEOUT)
def test_any_url_body_is_a_new_set_or_a_failed_fetch_and_leaves_other_pods_alone(files: Desired) -> None:
    web = files.pods[0]
    good = b"kind: Pod\nmetadata: {name: alpha}\nspec:\n  containers: [{name: c, image: busybox}]\n"
    recorder = Recorder(good)
    loop = asyncio.new_event_loop()
    server = serving(recorder)
    try:
        base = loop.run_until_complete(server.__aenter__())
        fetcher = Fetcher(base + "/pods")
        first = loop.run_until_complete(fetcher.fetch())
        assert first is not None and [p.name for p in first] == ["alpha-node1"]

        @fuzz_settings(URL_EXAMPLES)
        @given(content=contents())
        def fetch_one(content: bytes) -> None:
            source: HttpSource = fetcher.source
            kept = source.status.pods
            recorder.body = content
            events = len(fetcher.events)
            started = time.monotonic()
            pods = loop.run_until_complete(fetcher.fetch())
            assert time.monotonic() - started < BOUND_SECONDS
            if pods is None and source.status.failures:
                assert fetcher.reasons()[events:] == ["ManifestURLFailed"]
                assert source.status.pods == kept  # the last good set stays
            assert_web_unchanged(merge_sources(files, pods or []), web)
            recorder.body = good  # back to a good set, so the next example starts from one
            loop.run_until_complete(fetcher.fetch())

        fetch_one()
    finally:
        loop.run_until_complete(server.__aexit__(None, None, None))
        loop.close()
