"""Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) with kubectl's columns for
pods, events and nodes: the API server's printers, so `kubectl get` prints what it prints against a cluster."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from nodeagent.printing import age, pod_ready, pod_restarts, pod_status_word

Row = Callable[[dict[str, Any], dt.datetime], list[Any]]

POD_COLUMNS = (("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
               ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
               ("Readiness Gates", "string", 1))
EVENT_COLUMNS = (("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                 ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
                 ("Message", "string", 0), ("First Seen", "string", 1), ("Count", "string", 1),
                 ("Name", "string", 1))
NODE_COLUMNS = (("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
                ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
                ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1))


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def pod_row(pod: dict[str, Any], now: dt.datetime) -> list[Any]:
    meta, status = pod["metadata"], pod.get("status", {})
    return [meta["name"], pod_ready(pod), pod_status_word(pod), pod_restarts(pod, now),
            age(meta.get("creationTimestamp"), now), status.get("podIP") or "<none>",
            pod.get("spec", {}).get("nodeName") or "<none>", "<none>", "<none>"]


def event_row(event: dict[str, Any], now: dt.datetime) -> list[Any]:
    involved = event.get("involvedObject", {})
    source = event.get("source", {})
    return [age(event.get("lastTimestamp"), now), event.get("type", ""), event.get("reason", ""),
            f"{involved.get('kind', '').lower()}/{involved.get('name', '')}", involved.get("fieldPath", ""),
            ", ".join(v for v in (source.get("component"), source.get("host")) if v), event.get("message", ""),
            age(event.get("firstTimestamp"), now), event.get("count", 1), event["metadata"]["name"]]


def node_row(node: dict[str, Any], now: dt.datetime) -> list[Any]:
    status = node.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    info = status.get("nodeInfo", {})
    addresses = {a["type"]: a["address"] for a in status.get("addresses", [])}
    return [node["metadata"]["name"], "Ready" if ready else "NotReady", "<none>",
            age(node["metadata"].get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


COLUMNS: dict[str, tuple[tuple[str, str, int], ...]] = {"pods": POD_COLUMNS, "events": EVENT_COLUMNS,
                                                        "nodes": NODE_COLUMNS}
ROWS: dict[str, Row] = {"pods": pod_row, "events": event_row, "nodes": node_row}


def table(resource: str, items: list[dict[str, Any]], now: dt.datetime, resource_version: str) -> dict[str, Any]:
    """A `meta.k8s.io/v1 Table` of `items`, each row with the object's metadata (kubectl's NAMESPACE column)."""
    row = ROWS[resource]
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                               "description": "", "priority": priority}
                              for name, kind, priority in COLUMNS[resource]],
        "rows": [{"cells": row(item, now),
                  "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": item["metadata"]}} for item in items],
    }
