"""The files of a downwardAPI volume, as the kubelet's downwardapi volume plugin writes them.

Pure. Labels and annotations are `key="value"` lines in key order (Go's %q quoting), the last without a
newline; the other fields their plain value; resources as in env (nodeagent.agent.env.resource_value).

    downward_files(source, pod, node) -> {"labels": ('app="web"\\ntier="front"', 0o644), ...}
"""

from __future__ import annotations

import json

from nodeagent.agent.env import PodAddresses, field_value, resource_value
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model_volumes import DownwardAPIVolumeSource
from nodeagent.plan.settings import NodeInfo

NO_ADDRESSES = PodAddresses(host_ip="", pod_ip="")  # a volume may not ask for status.* fields


def format_map(values: dict[str, str]) -> str:
    return "\n".join(f"{key}={json.dumps(values[key], ensure_ascii=False)}" for key in sorted(values))


def downward_files(source: DownwardAPIVolumeSource, pod: StaticPod, node: NodeInfo) -> dict[str, tuple[str, int]]:
    meta = pod.pod.metadata
    files: dict[str, tuple[str, int]] = {}
    for item in source.items or []:
        mode = item.mode if item.mode is not None else source.default_mode
        if item.field_ref is not None:
            path = item.field_ref.field_path or ""
            if path == "metadata.labels":
                text = format_map(dict(meta.labels or {}))
            elif path == "metadata.annotations":
                text = format_map(dict(meta.annotations or {}))
            else:
                text = field_value(path, pod, NO_ADDRESSES)
        else:
            assert item.resource_field_ref is not None  # validation: one of the two
            ref = item.resource_field_ref
            container = next((c for c in pod.pod.all_containers() if c.name == ref.container_name), None)
            if container is None:
                raise ValueError(f'resourceFieldRef: container "{ref.container_name}" is not in the pod')
            text = resource_value(ref, pod, container, node)
        files[item.path or ""] = (text, mode)
    return files
