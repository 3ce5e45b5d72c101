"""The OpenAPI documents kubectl asks for (`kubectl explain`: /openapi/v3, then the group-version's document):
small, valid OpenAPI 3.0 with the kinds this node serves, their top-level fields described, and each schema
tagged with its group-version-kind as the API server tags them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_COMMON = {
    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this "
                                                    "representation of an object."},
    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object "
                                              "represents."},
    "metadata": {"allOf": [{"$ref": f"#/components/schemas/{META}"}], "default": {},
                 "description": "Standard object's metadata."},
}


def _kind(group: str, version: str, kind: str, description: str, fields: dict[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = dict(_COMMON)
    for name, text in fields.items():
        properties[name] = {"type": "object", "description": text}
    return {"description": description, "type": "object", "properties": properties,
            "x-kubernetes-group-version-kind": [{"group": group, "kind": kind, "version": version}]}


_META_SCHEMA = {"description": "ObjectMeta is metadata that all persisted resources must have.", "type": "object",
                "properties": {name: {"type": "string", "description": text} for name, text in (
                    ("name", "Name must be unique within a namespace."),
                    ("namespace", "Namespace defines the space within which each name must be unique."),
                    ("uid", "UID is the unique in time and space value for this object."),
                    ("resourceVersion", "An opaque value that represents the internal version of this object."),
                    ("creationTimestamp", "A timestamp representing the server time when this object was created."))}
                | {"labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                              "description": "Map of string keys and values to organize and categorize objects."},
                   "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                                   "description": "An unstructured key value map stored with a resource."}}}

DOCUMENTS: dict[str, dict[str, Any]] = {
    "api/v1": {"openapi": "3.0.0", "info": {"title": "Kubernetes (nodeagent)", "version": "v1.32.0"}, "paths": {},
               "components": {"schemas": {
                   META: _META_SCHEMA,
                   "io.k8s.api.core.v1.Pod": _kind("", "v1", "Pod", (
                       "Pod is a collection of containers that can run on a host. On nodeagent, a static pod: its "
                       "manifest in the static pod path (or at staticPodURL) is its only source."), {
                       "spec": "Specification of the desired behavior of the pod (from its manifest).",
                       "status": "Most recently observed status of the pod."}),
                   "io.k8s.api.core.v1.Node": _kind("", "v1", "Node", "Node is this machine, as nodeagent sees "
                                                    "it.", {"spec": "Spec defines the behavior of a node.",
                                                            "status": "Most recently observed status of the node."}),
                   "io.k8s.api.core.v1.Event": _kind("", "v1", "Event", "Event is a report of an event somewhere in "
                                                     "the cluster.", {"involvedObject": "The object that this event "
                                                                      "is about."}),
               }}},
    "apis/metrics.k8s.io/v1beta1": {
        "openapi": "3.0.0", "info": {"title": "Kubernetes (nodeagent)", "version": "v1.32.0"}, "paths": {},
        "components": {"schemas": {
            META: _META_SCHEMA,
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics": _kind(
                "metrics.k8s.io", "v1beta1", "PodMetrics", "PodMetrics sets resource usage metrics of a pod.",
                {"containers": "Metrics for all containers are collected within the same time window."}),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": _kind(
                "metrics.k8s.io", "v1beta1", "NodeMetrics", "NodeMetrics sets resource usage metrics of a node.",
                {"usage": "The memory and CPU usage of the node."}),
        }}},
}


def _list_path(path: str, resource: str, kind: str, *, namespaced: bool) -> tuple[str, dict[str, Any]]:
    """The list operation of a resource, where `kubectl explain` finds the kind of a resource."""
    group, _, version = path.removeprefix("apis/").rpartition("/") if path.startswith("apis/") else ("", "", "v1")
    where = f"/{path}/namespaces/{{namespace}}/{resource}" if namespaced else f"/{path}/{resource}"
    return where, {"get": {"x-kubernetes-action": "list",
                           "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
                           "responses": {"200": {"description": "OK"}}}}


for _path, _resource, _kind_name, _namespaced in (
        ("api/v1", "pods", "Pod", True), ("api/v1", "events", "Event", True), ("api/v1", "nodes", "Node", False),
        ("apis/metrics.k8s.io/v1beta1", "pods", "PodMetrics", True),
        ("apis/metrics.k8s.io/v1beta1", "nodes", "NodeMetrics", False)):
    _where, _operation = _list_path(_path, _resource, _kind_name, namespaced=_namespaced)
    DOCUMENTS[_path]["paths"][_where] = _operation


def _hash(path: str) -> str:
    return hashlib.sha256(json.dumps(DOCUMENTS[path], sort_keys=True).encode()).hexdigest()[:32].upper()


def index() -> dict[str, Any]:
    """/openapi/v3: where each group-version's document is."""
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(path)}"} for path in DOCUMENTS}}
