"""downwardAPI volume files as the kubelet writes them."""

from __future__ import annotations

from nodeagent.agent.downward import downward_files
from nodeagent.api.manifest import load_manifest
from nodeagent.plan.settings import NodeInfo

MANIFEST = b"""
kind: Pod
metadata: {name: web, namespace: prod, labels: {tier: front, app: web}, annotations: {note: 'say "hi"'}}
spec:
  containers: [{name: c, image: x, resources: {limits: {memory: 64Mi, cpu: 500m}}}]
  volumes:
  - name: info
    downwardAPI:
      defaultMode: 384
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: meta/annotations, fieldRef: {fieldPath: metadata.annotations}, mode: 420}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
      - {path: cpu, resourceFieldRef: {containerName: c, resource: limits.cpu, divisor: 1m}}
"""


def test_downward_files() -> None:
    result = load_manifest(MANIFEST, origin="/m/web.yaml", source="file", node_name="n1")
    assert [str(p) for p in result.problems] == []
    (pod,) = result.pods
    (volume,) = pod.pod.spec.volumes or []
    assert volume.downward_api is not None
    node = NodeInfo(cpu_millis=4000, memory_bytes=8 << 30)
    files = downward_files(volume.downward_api, pod, node)
    annotations, mode = files.pop("meta/annotations")
    assert mode == 0o644
    assert annotations.endswith('\nkubernetes.io/config.source="file"\nnodeagent/config.origin="/m/web.yaml"\n'
                                'note="say \\"hi\\""')  # the kubelet's own annotations of a static pod too
    assert files == {
        "labels": ('app="web"\ntier="front"', 0o600),
        "name": ("web-n1", 0o600),
        "tier": ("front", 0o600),
        "mem": ("64", 0o600),
        "cpu": ("500", 0o600),
    }
