"""Issue 12 item 11: two pods with one metadata.uid would displace each other in the pod manager (keyed by
UID). The first one runs, the other is a DuplicateManifest: files before the URL, files in name order."""

from __future__ import annotations

from pathlib import Path

from nodeagent.api.manifest import StaticPod, load_manifest
from nodeagent.sources.merge import merge_files, merge_sources
from tests.conftest import ReadableSource

UID = "6f1c2a9e-0d0b-4c1f-9a57-1d2e3f4a5b6c"


def pod(name: str, uid: str = UID) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, uid: {uid}}}\n"
            "spec:\n  containers: [{name: c, image: busybox}]\n")


def http_pods(text: str) -> list[StaticPod]:
    result = load_manifest(text.encode(), origin="http://127.0.0.1:1/pods", source="http", node_name="node1")
    assert result.ok, [str(p) for p in result.problems]
    return result.pods


def test_one_uid_in_two_files_runs_the_first_file_s_pod(tmp_path: Path) -> None:
    (tmp_path / "20-impostor.yaml").write_text(pod("impostor"))
    (tmp_path / "10-web.yaml").write_text(pod("web"))
    desired = merge_files(ReadableSource(str(tmp_path), node_name="node1", frequency_seconds=20).scan(), {})
    assert [p.name for p in desired.pods] == ["web-node1"]
    [problem] = desired.problems
    assert problem.reason == "DuplicateManifest"
    assert problem.pod is desired.pods[0]
    assert problem.message == (
        f"pod default/impostor-node1 in {tmp_path / '20-impostor.yaml'} has the UID {UID} of pod "
        f"default/web-node1 in {tmp_path / '10-web.yaml'}: running the one from {tmp_path / '10-web.yaml'}, "
        f"ignoring {tmp_path / '20-impostor.yaml'}")


def test_one_uid_in_a_file_and_at_the_url_runs_the_file_s_pod(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(pod("web"))
    files = merge_files(ReadableSource(str(tmp_path), node_name="node1", frequency_seconds=20).scan(), {})
    desired = merge_sources(files, http_pods(pod("impostor") + "---\n" + pod("other", uid="other-uid")))
    assert [(p.name, p.source) for p in desired.pods] == [("web-node1", "file"), ("other-node1", "http")]
    [problem] = desired.problems
    assert problem.reason == "DuplicateManifest" and "(files win)" in problem.message
    assert f"has the UID {UID} of pod default/web-node1" in problem.message


def test_one_uid_twice_in_one_file_is_an_invalid_file() -> None:
    result = load_manifest((pod("web") + "---\n" + pod("impostor")).encode(), origin="/m/x.yaml",
                           source="file", node_name="node1")
    assert not result.ok
    assert [str(p) for p in result.problems] == [f'document 2: metadata.uid: Duplicate value: "{UID}"']
