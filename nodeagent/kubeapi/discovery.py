"""Discovery as kubectl reads it: /version, /api, /api/v1, /apis and the metrics.k8s.io group, listing only
what this node serves and with the verbs it allows; /api and /apis also aggregated (below), as kubectl asks
first."""

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


# Aggregated discovery (KEP-3352): each of /api and /apis in one APIGroupDiscoveryList, asked for with
# `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` (kubectl 1.30+; v2beta1 before).
# A client that does not ask gets the documents above.
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery.k8s.io version of the first aggregated media type in `accept` served here, or None."""
    for media in accept.split(","):
        params = dict(part.strip().partition("=")[::2] for part in media.split(";")[1:])
        if (params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList"
                and params.get("v") in AGGREGATED_VERSIONS):
            return params["v"]
    return None


def aggregated_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def aggregated(version: str, *groups: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The APIGroupDiscoveryList of (group, its legacy APIResourceList) pairs; a subresource ("pods/log") is
    listed under its resource."""
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": [_discovery_group(group, resources) for group, resources in groups]}


def _discovery_group(group: str, resources: dict[str, Any]) -> dict[str, Any]:
    version = resources["groupVersion"].rpartition("/")[2]
    top: dict[str, dict[str, Any]] = {}
    for resource in resources["resources"]:
        name, _, sub = resource["name"].partition("/")
        kind = {"group": group, "version": version, "kind": resource["kind"]}
        if sub:
            top[name].setdefault("subresources", []).append(
                {"subresource": sub, "responseKind": kind, "verbs": resource["verbs"]})
            continue
        top[name] = {"resource": name, "responseKind": kind, "singularResource": resource["singularName"],
                     "scope": "Namespaced" if resource["namespaced"] else "Cluster", "verbs": resource["verbs"],
                     **{field: resource[field] for field in ("shortNames", "categories") if field in resource}}
    return {"metadata": {"name": group, "creationTimestamp": None},
            "versions": [{"version": version, "resources": list(top.values()), "freshness": "Current"}]}
