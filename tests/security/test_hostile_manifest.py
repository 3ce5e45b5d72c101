"""Issue 12 item 2: no manifest, however built, makes load_manifest raise; each is an invalid manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

import nodeagent.api.manifest as manifest_module
from nodeagent.api.decode import MAX_NESTING
from nodeagent.api.manifest import load_manifest
from tests.conftest import ReadableSource

CONTAINER = '{"name": "c", "image": "busybox"}'


def nested_json(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def json_pod(extra_spec: str = "", labels: str = "{}") -> bytes:
    return ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": ' + labels + '}, '
            '"spec": {"containers": [' + CONTAINER + "]" + extra_spec + "}}").encode()


def problems(content: bytes) -> list[str]:
    result = load_manifest(content, origin="/m/web.json", source="file", node_name="node1")
    assert not result.pods
    return [str(p) for p in result.problems]


@pytest.mark.parametrize("levels", [600, 900])
def test_deep_nesting_with_a_wrongly_typed_field_is_invalid_not_a_crash(levels: int) -> None:
    # Before the cap, validation deep-copied the document to drop the bad field: RecursionError.
    found = problems(json_pod(labels=nested_json(levels)))
    assert found == [f"document 1 nests maps and lists more than {MAX_NESTING} deep"]


def test_deep_unknown_field_beside_a_wrong_type_is_invalid_not_a_crash() -> None:
    deep = json_pod(extra_spec=', "hostNetwork": "yes", "x": ' + nested_json(700))
    assert problems(deep) == [f"document 1 nests maps and lists more than {MAX_NESTING} deep"]


def test_deep_yaml_is_invalid_not_a_crash() -> None:
    text = "kind: Pod\nmetadata: {name: web}\nspec:\n  hostNetwork: 3\n  x: " + "[" * 700 + "]" * 700 + "\n"
    assert problems(text.encode()) == [f"a document nests maps and lists more than {MAX_NESTING} deep"]


def test_nesting_up_to_the_cap_is_accepted_as_data() -> None:
    # A pod needs about 15 levels; the cap is far above, and a wrongly typed field is still just that.
    found = problems(json_pod(labels=nested_json(MAX_NESTING - 3)))
    assert len(found) == 1 and found[0].startswith("metadata.labels.a: Invalid value:")


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 101])
def test_huge_integers_are_invalid_not_a_crash(number: str) -> None:
    # Python refuses to convert integers of more than 4300 digits with a bare ValueError.
    assert problems(json_pod(extra_spec=f', "priority": {number}')) == ["a number has more than 100 digits"]
    yaml_pod = f"kind: Pod\nmetadata: {{name: web}}\nspec:\n  priority: {number}\n  containers: [{CONTAINER}]\n"
    assert problems(yaml_pod.encode()) == ["line 4: a number has more than 100 digits"]


def test_any_unforeseen_failure_of_one_pod_is_that_pod_s_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: object) -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr(manifest_module, "parse_pod", broken)
    assert problems(json_pod()) == ["cannot be processed (KeyError: 'no such thing'); the agent's log has the details"]


def test_any_unforeseen_failure_of_decoding_is_the_file_s_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(content: bytes) -> None:
        raise MemoryError

    monkeypatch.setattr(manifest_module, "decode_manifest", broken)
    assert problems(json_pod()) == ["cannot be processed (MemoryError); the agent's log has the details"]


def test_the_file_source_reports_a_deep_file_and_reads_the_others(tmp_path: Path) -> None:
    (tmp_path / "a-deep.json").write_bytes(json_pod(labels=nested_json(800)))
    (tmp_path / "b-good.json").write_bytes(json_pod().replace(b'"web"', b'"good"'))
    files = ReadableSource(str(tmp_path), node_name="node1", frequency_seconds=20).scan()
    assert [f.result.ok for f in files] == [False, True]
    assert [p.name for p in files[1].result.pods] == ["good-node1"]
