"""Static pod identity: the kubelet's name, namespace, UID and config annotations.

The UID is a 128-bit hash over the decoded manifest (canonical JSON, before defaulting, so an
upgrade of nodeagent with new defaults keeps UIDs stable, unlike kubernetes#116080), the node name
and the source, unless the manifest sets metadata.uid. The kubelet hashes its Go structs with
FNV-128a, which cannot be reproduced outside Go; BLAKE2b-128 gives the same properties here at a
hundredth of the cost of FNV in pure Python.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_ORIGIN = "nodeagent/config.origin"  # the file, or the URL without its secrets
DEFAULT_NAMESPACE = "default"

def config_hash(raw: dict[str, Any], *, node_name: str, source: str, origin: str) -> str:
    """32 hex digits; `source` is "file" or "http" (the kubelet writes "url:" for the latter)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    scheme = "file" if source == "file" else "url"
    payload = canonical.encode() + f"host:{node_name}{scheme}:{origin}".encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def static_pod_name(name: str, node_name: str) -> str:
    return f"{name}-{node_name.lower()}"
