"""Discovery as kubectl reads it (the legacy, unaggregated documents): /version, /api, /api/v1, /apis and
the metrics.k8s.io group, listing only what this node serves and with the verbs it allows."""

from __future__ import annotations

import platform
from typing import Any

from nodeagent.kubeapi.nodes import KUBELET_VERSION

READ = ["get", "list", "watch"]


def version() -> dict[str, Any]:
    return {"major": "1", "minor": "32", "gitVersion": KUBELET_VERSION, "gitCommit": "", "gitTreeState": "",
            "buildDate": "", "goVersion": "", "compiler": "nodeagent",
            "platform": f"linux/{platform.machine()}"}


def api_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _resource(name: str, kind: str, verbs: list[str], *, namespaced: bool = True,
              short: list[str] | None = None, singular: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind,
                           "verbs": verbs}
    if short:
        out["shortNames"] = short
    if "/" not in name and kind in ("Pod", "Node", "Event"):
        out["categories"] = ["all"] if kind == "Pod" else []
    return out


def core_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        _resource("pods", "Pod", [*READ, "delete"], short=["po"], singular="pod"),
        _resource("pods/log", "Pod", ["get"]),
        _resource("pods/exec", "PodExecOptions", ["create", "get"]),
        _resource("pods/attach", "PodAttachOptions", ["create", "get"]),
        _resource("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
        _resource("events", "Event", READ, short=["ev"], singular="event"),
        _resource("nodes", "Node", READ, namespaced=False, short=["no"], singular="node"),
    ]}


METRICS = {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}


def groups() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "metrics.k8s.io", "versions": [METRICS], "preferredVersion": METRICS}]}


def metrics_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", "name": "metrics.k8s.io", "versions": [METRICS],
            "preferredVersion": METRICS}


def metrics_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
        _resource("pods", "PodMetrics", ["get", "list"], singular=""),
        _resource("nodes", "NodeMetrics", ["get", "list"], namespaced=False, singular=""),
    ]}
