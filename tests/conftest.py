"""Shared helpers: the examples from the Kubernetes docs, a loader for manifests, a file source that reads."""

from __future__ import annotations

from pathlib import Path

from nodeagent.api.manifest import StaticPod, load_manifest
from nodeagent.sources.files import FileSource, ManifestFile

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_pod(text: str | bytes, *, node_name: str = "node1", origin: str = "/m/pod.yaml") -> StaticPod:
    """Exactly one valid pod from a manifest, or the test fails with the problems."""
    content = text.encode() if isinstance(text, str) else text
    result = load_manifest(content, origin=origin, source="file", node_name=node_name)
    assert result.ok, [str(p) for p in result.problems]
    assert len(result.pods) == 1
    return result.pods[0]


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


class ReadableSource(FileSource):
    """A FileSource on a path the test made: its scan() never answers None (for a path it cannot read)."""

    def scan(self) -> list[ManifestFile]:
        found = super().scan()
        assert found is not None, f"{self.path} cannot be read"
        return found
