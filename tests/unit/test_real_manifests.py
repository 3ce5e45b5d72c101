"""Real static pod manifests (tests/fixtures/real, each with its source on its first line) plan with no
unknown-field warning: every field they set is in the model, honoured or refused by name (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.api.manifest import load_manifest

REAL = Path(__file__).parent.parent / "fixtures" / "real"
# What the rule refuses in some of them, by file: the field named, and why (docs/fidelity.md).
REFUSED = {
    "openshift-keepalived.yaml": [
        "metadata.deletionGracePeriodSeconds: Forbidden: not supported by nodeagent yet"],
}
# Keys that are not in the v1 API at all, so "unknown field" is right for them.
NOT_IN_THE_API = {
    # OpenShift's keepalived writes `empty-dir:` (not a field): the API drops it and defaults the volume,
    # which has no source left, to an emptyDir, as nodeagent does.
    "openshift-keepalived.yaml": ['spec.volumes[4].empty-dir: unknown field "empty-dir" (did you mean "emptyDir"?)'],
}
FILES = sorted(path.name for path in REAL.iterdir())


def test_at_least_ten_real_manifests_with_their_source() -> None:
    assert len(FILES) >= 10
    for name in FILES:
        assert (REAL / name).read_text().startswith("# Source: "), name


@pytest.mark.parametrize("name", FILES)
def test_a_real_manifest_plans_without_an_unknown_field(name: str) -> None:
    result = load_manifest((REAL / name).read_bytes(), origin=f"/m/{name}", source="file", node_name="node1")
    unknown = [str(w) for w in result.warnings if "unknown field" in str(w)]
    assert unknown == NOT_IN_THE_API.get(name, [])
    assert [str(p) for p in result.problems] == REFUSED.get(name, [])
    if name not in REFUSED:
        assert len(result.pods) == 1

