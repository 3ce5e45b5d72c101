"""The manifest index: a restarted agent takes the pods it restored for files that did not change, without
parsing them, and parses everything else as before (real files in tmp_path, scan() and record() called directly)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

import nodeagent.api
from nodeagent.api.manifest import StaticPod, load_manifest
from nodeagent.api.model import Pod
from nodeagent.sources import fileindex, files
from nodeagent.sources.files import FileSource, ManifestFile

NODE = "node1"
SLEEPER = "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: busybox}]\n"


def agent(manifests: Path, state: Path, restored: Sequence[StaticPod] = (), node: str = NODE) -> FileSource:
    return FileSource(str(manifests), node_name=node, frequency_seconds=20, index=fileindex.index_path(str(state)),
                      restored=restored)


def scan(source: FileSource) -> list[ManifestFile] | None:
    """A scan, recorded in the index as the agent records it after handing the pods on."""
    found = source.scan()
    if found is not None:
        source.record(found)
    return found


def as_restored(found: list[ManifestFile]) -> list[StaticPod]:
    """The pods as the state directory gives them back: dumped, then validated again (nodeagent.agent.snapshot)."""
    return [StaticPod(pod=Pod.model_validate(p.pod.model_dump(by_alias=True, exclude_none=True)), source=p.source,
                      origin=p.origin, config_hash=p.config_hash, qos=p.qos) for m in found for p in m.result.pods]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []

    def counting(content: bytes, **kwargs: str) -> object:
        parsed.append(kwargs["origin"])
        return load_manifest(content, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "load_manifest", counting)
    return parsed


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "state").mkdir()
    return tmp_path / "manifests", tmp_path / "state"


def test_a_restart_takes_the_restored_pods_of_unchanged_files_without_parsing(
        dirs: tuple[Path, Path], parses: list[str]) -> None:
    manifests, state = dirs
    for name in ("a", "b"):
        (manifests / f"{name}.yaml").write_text(SLEEPER % name)
    before = scan(agent(manifests, state))
    assert before is not None and len(parses) == 2
    restored = as_restored(before)
    parses.clear()
    after = scan(agent(manifests, state, restored))
    assert parses == []
    assert after is not None and [p for m in after for p in m.result.pods] == restored
    assert [m.digest for m in after] == [m.digest for m in before]


def test_a_file_changed_while_the_agent_was_away_is_parsed(dirs: tuple[Path, Path], parses: list[str]) -> None:
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a")
    (manifests / "b.yaml").write_text(SLEEPER % "b")
    restored = as_restored(scan(agent(manifests, state)) or [])
    (manifests / "b.yaml").write_text(SLEEPER % "b2")
    parses.clear()
    after = scan(agent(manifests, state, restored))
    assert parses == [str(manifests / "b.yaml")]
    assert after is not None and after[1].result.pods[0].name == f"b2-{NODE}"


def test_files_with_warnings_or_pods_not_restored_are_parsed_again(dirs: tuple[Path, Path], parses: list[str]) -> None:
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a" + "  unknownField: 1\n")  # a warning: reported again
    (manifests / "b.yaml").write_text(SLEEPER % "b")
    (manifests / "c.yaml").write_text(SLEEPER % "c")
    first = scan(agent(manifests, state)) or []
    assert first[0].result.warnings
    recorded = json.loads((state / fileindex.FILE).read_text())["files"]
    assert sorted(Path(name).name for name in recorded) == ["b.yaml", "c.yaml"]
    restored = [p for p in as_restored(first) if p.name != f"c-{NODE}"]  # c's pod was not restored
    parses.clear()
    again = scan(agent(manifests, state, restored)) or []
    assert parses == [str(manifests / "a.yaml"), str(manifests / "c.yaml")]
    assert again[0].result.warnings


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"version": 1, "node": "node1", "files": {"x": 1}}',
                                     b'{"version": 2, "node": "node1", "files": {}}', b"\xff" * 10])
def test_a_damaged_index_means_every_file_is_parsed(dirs: tuple[Path, Path], parses: list[str], content: bytes) -> None:
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a")
    restored = as_restored(scan(agent(manifests, state)) or [])
    (state / fileindex.FILE).write_bytes(content)
    parses.clear()
    assert scan(agent(manifests, state, restored)) is not None
    assert parses == [str(manifests / "a.yaml")]
    assert json.loads((state / fileindex.FILE).read_text())["version"] == 1  # written whole again


def test_another_node_name_parses_every_file(dirs: tuple[Path, Path], parses: list[str]) -> None:
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a")
    restored = as_restored(scan(agent(manifests, state)) or [])
    parses.clear()
    renamed = scan(agent(manifests, state, restored, node="node2")) or []
    assert parses == [str(manifests / "a.yaml")]
    assert renamed[0].result.pods[0].name == "a-node2"


def test_an_upgraded_parser_parses_every_file_once(dirs: tuple[Path, Path], parses: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new agent refuses or warns about in an unchanged file must be reported at its first start."""
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a")
    restored = as_restored(scan(agent(manifests, state)) or [])
    parses.clear()
    monkeypatch.setattr(fileindex, "parser_fingerprint", lambda: "another parser")
    scan(agent(manifests, state, restored))
    assert parses == [str(manifests / "a.yaml")]


def test_the_parser_fingerprint_changes_with_a_file_of_the_parser(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "validation.py").write_text("x = 1\n")
    monkeypatch.setattr(nodeagent.api, "__path__", [str(tmp_path)])
    fileindex.parser_fingerprint.cache_clear()
    try:
        first = fileindex.parser_fingerprint()
        (tmp_path / "validation.py").write_text("x = 12\n")
        fileindex.parser_fingerprint.cache_clear()
        assert fileindex.parser_fingerprint() != first
    finally:
        fileindex.parser_fingerprint.cache_clear()


def test_the_index_is_written_only_when_it_changes(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    manifests, state = dirs
    (manifests / "a.yaml").write_text(SLEEPER % "a")
    saved: list[str] = []
    real = fileindex.save

    def counting(path: str, node_name: str, recorded: dict[str, fileindex.Entry]) -> None:
        saved.append(path)
        real(path, node_name, recorded)

    monkeypatch.setattr(fileindex, "save", counting)
    source = agent(manifests, state)
    scan(source)
    scan(source)
    assert len(saved) == 1
    (manifests / "b.yaml").write_text(SLEEPER % "b")
    scan(source)
    assert len(saved) == 2
