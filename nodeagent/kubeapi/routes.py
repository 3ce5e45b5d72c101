"""The Kubernetes API routes for pods, events, nodes and metrics, with the API server's semantics:
namespaced and cluster-wide lists, label and field selectors, resourceVersion, `watch=true` streams,
server-side Tables, Status errors, and DELETE of a static pod answered as for the kubelet's mirror pods.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from nodeagent.kubeapi import discovery, openapi
from nodeagent.kubeapi.selectors import EVENT_FIELDS, POD_FIELDS, Match, SelectorError, matcher
from nodeagent.kubeapi.status import not_found, status_error
from nodeagent.kubeapi.tables import table, wants_table
from nodeagent.kubeapi.watch import Expired, PodFeed
from nodeagent.printing import pod_table

Items = Callable[[], list[dict[str, Any]]]
Metrics = Callable[[], Awaitable[list[dict[str, Any]]]]
WATCH_TIMEOUT_SECONDS = 1800  # the API server's --min-request-timeout is 1800s; kubectl asks for less
STATIC_POD_DELETE = ('{kind} "{name}" is a static pod: nodeagent keeps it running, as the kubelet recreates a '
                     "mirror pod; remove its manifest from the static pod path to stop it")


class KubeApi:
    def __init__(self, feed: PodFeed, events: Items, node: Callable[[], dict[str, Any]], pod_metrics: Metrics,
                 node_metrics: Metrics, *, address: Callable[[], str]) -> None:
        self.feed = feed
        self.events = events
        self.node = node
        self.pod_metrics = pod_metrics
        self.node_metrics = node_metrics
        self.address = address

    def add_routes(self, app: web.Application) -> None:
        get = app.router.add_get
        get("/version", _document(discovery.version))
        get("/api", _discovery(lambda: discovery.api_versions(self.address()), ("", discovery.core_resources)))
        get("/api/v1", _document(discovery.core_resources))
        get("/apis", _discovery(discovery.groups, ("metrics.k8s.io", discovery.metrics_resources)))
        get("/apis/metrics.k8s.io", _document(discovery.metrics_group))
        get("/apis/metrics.k8s.io/v1beta1", _document(discovery.metrics_resources))
        get("/openapi/v3", _document(openapi.index))
        for path, document in openapi.DOCUMENTS.items():
            get(f"/openapi/v3/{path}", _document(functools.partial(dict, document)))
        get("/api/v1/pods", self.list_pods)
        get("/api/v1/namespaces/{namespace}/pods", self.list_pods)
        get("/api/v1/namespaces/{namespace}/pods/{name}", self.get_pod)
        app.router.add_delete("/api/v1/namespaces/{namespace}/pods/{name}", self.delete_pod)
        get("/api/v1/events", self.list_events)
        get("/api/v1/namespaces/{namespace}/events", self.list_events)
        get("/api/v1/nodes", self.list_nodes)
        get("/api/v1/nodes/{name}", self.get_node)
        get("/apis/metrics.k8s.io/v1beta1/pods", self.list_pod_metrics)
        get("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", self.list_pod_metrics)
        get("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}", self.get_pod_metrics)
        get("/apis/metrics.k8s.io/v1beta1/nodes", self.list_node_metrics)
        get("/apis/metrics.k8s.io/v1beta1/nodes/{name}", self.get_node_metrics)

    # -- pods -------------------------------------------------------------------------------------

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        try:
            match = _matcher(request, POD_FIELDS, "Pod")
        except SelectorError as exc:
            return status_error(400, "BadRequest", str(exc))
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, match)
        pods = [pod for pod in self.feed.pods() if match(pod)]
        version = str(self.feed.version)
        if request.query.get("view") == "table":  # nodeagent's own CLI: its columns
            return _json(pod_table(pods, _now()))
        if wants_table(request.headers.get("Accept", "")):
            return _json(table("pods", pods, _now(), version))
        return _json({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version},
                      "items": pods})

    def _find(self, request: web.Request) -> dict[str, Any] | None:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        return next((pod for pod in self.feed.pods()
                     if pod["metadata"]["namespace"] == namespace and pod["metadata"]["name"] == name), None)

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self._find(request)
        if pod is None:
            return not_found("pods", request.match_info["name"])
        if request.query.get("view") == "table":  # nodeagent's own CLI: its columns
            return _json(pod_table([pod], _now()))
        if wants_table(request.headers.get("Accept", "")):
            return _json(table("pods", [pod], _now(), pod["metadata"]["resourceVersion"]))
        return _json(pod)

    async def delete_pod(self, request: web.Request) -> web.Response:
        """As for a mirror pod: the request succeeds and the pod keeps running. The answer is a Status
        without the pod's UID, so `kubectl delete` (waiting for that UID to go) returns at once, and a
        Warning header says what happened (kubectl prints it)."""
        name = request.match_info["name"]
        if self._find(request) is None:
            return not_found("pods", name)
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": "pods", "uid": ""}}
        warning = STATIC_POD_DELETE.format(kind="pod", name=name).replace('"', "'")
        return web.json_response(body, headers={"Warning": f'299 - "{warning}"'})

    async def _watch(self, request: web.Request, match: Match) -> web.StreamResponse:
        """The API server's watch: with no resourceVersion (or "0"), ADDED for every pod now, then the
        changes; with one, the changes after it (410 Gone when too old). A pod that stops matching the
        selectors is DELETED for this watcher, one that starts matching ADDED."""
        as_table = wants_table(request.headers.get("Accept", ""))
        raw = request.query.get("resourceVersion", "")
        try:
            since = int(raw) if raw not in ("", "0") else None
        except ValueError:
            return status_error(400, "BadRequest", f'invalid resource version "{raw}"')
        timeout = min(_number(request.query.get("timeoutSeconds"), WATCH_TIMEOUT_SECONDS), WATCH_TIMEOUT_SECONDS)
        namespace = request.match_info.get("namespace")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(kind: str, pod: dict[str, Any]) -> None:
            obj = table("pods", [pod], _now(), pod["metadata"]["resourceVersion"]) if as_table else pod
            await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        def visible(pod: dict[str, Any]) -> bool:
            return (namespace is None or pod["metadata"]["namespace"] == namespace) and match(pod)

        shown = {pod["metadata"]["uid"] for pod in self.feed.pods() if visible(pod)}
        try:
            async with asyncio.timeout(timeout):
                if since is None:
                    since = self.feed.version
                    for pod in self.feed.pods():
                        if pod["metadata"]["uid"] in shown:
                            await send("ADDED", pod)
                while True:
                    for change in await self.feed.changes(since):
                        since = change.version
                        uid, now_visible = change.pod["metadata"]["uid"], visible(change.pod)
                        if change.type == "DELETED" or not now_visible:
                            if uid in shown:
                                shown.discard(uid)
                                await send("DELETED", change.pod)
                        elif uid in shown:
                            await send("MODIFIED", change.pod)
                        else:
                            shown.add(uid)
                            await send("ADDED", change.pod)
        except Expired as exc:
            error = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": str(exc),
                     "reason": "Expired", "code": 410}
            await response.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
        except (TimeoutError, ConnectionError):
            pass
        return response

    # -- events and nodes ---------------------------------------------------------------------------

    async def list_events(self, request: web.Request) -> web.Response:
        try:
            match = _matcher(request, EVENT_FIELDS, "Event")
        except SelectorError as exc:
            return status_error(400, "BadRequest", str(exc))
        namespace = request.match_info.get("namespace")
        events = [event for event in self.events()
                  if (namespace is None or event["metadata"]["namespace"] == namespace) and match(event)]
        if wants_table(request.headers.get("Accept", "")):
            return _json(table("events", events, _now(), ""))
        return _json({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": ""}, "items": events})

    async def list_nodes(self, request: web.Request) -> web.Response:
        try:
            match = _matcher(request, ("metadata.name",), "Node")
        except SelectorError as exc:
            return status_error(400, "BadRequest", str(exc))
        nodes = [node for node in [self.node()] if match(node)]
        if wants_table(request.headers.get("Accept", "")):
            return _json(table("nodes", nodes, _now(), "1"))
        return _json({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": nodes})

    async def get_node(self, request: web.Request) -> web.Response:
        node = self.node()
        if node["metadata"]["name"] != request.match_info["name"]:
            return not_found("nodes", request.match_info["name"])
        if wants_table(request.headers.get("Accept", "")):
            return _json(table("nodes", [node], _now(), "1"))
        return _json(node)

    # -- metrics.k8s.io -----------------------------------------------------------------------------

    async def list_pod_metrics(self, request: web.Request) -> web.Response:
        try:
            labels = matcher({"labelSelector": request.query.get("labelSelector", "")}, (), "PodMetrics")
        except SelectorError as exc:
            return status_error(400, "BadRequest", str(exc))
        namespace = request.match_info.get("namespace")
        pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self.feed.pods()}
        items = [item for item in await self.pod_metrics()
                 if (namespace is None or item["metadata"]["namespace"] == namespace)
                 and labels(pods.get((item["metadata"]["namespace"], item["metadata"]["name"]), {}))]
        return _json({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {},
                      "items": items})

    async def get_pod_metrics(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        for item in await self.pod_metrics():
            if (item["metadata"]["namespace"], item["metadata"]["name"]) == key:
                return _json({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", **item})
        return not_found("podmetrics.metrics.k8s.io", key[1])

    async def list_node_metrics(self, request: web.Request) -> web.Response:
        return _json({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetricsList", "metadata": {},
                      "items": await self.node_metrics()})

    async def get_node_metrics(self, request: web.Request) -> web.Response:
        for item in await self.node_metrics():
            if item["metadata"]["name"] == request.match_info["name"]:
                return _json({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", **item})
        return not_found("nodemetrics.metrics.k8s.io", request.match_info["name"])


def _document(make: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _json(make())
    return handler


def _discovery(legacy: Callable[[], dict[str, Any]], *groups: tuple[str, Callable[[], dict[str, Any]]]) -> Callable[
        [web.Request], Awaitable[web.Response]]:
    """/api or /apis: aggregated when the client asks for it (one request instead of one per group), else legacy."""
    async def handler(request: web.Request) -> web.Response:
        version = discovery.aggregated_version(request.headers.get("Accept", ""))
        if version is None:
            return _json(legacy())
        document = discovery.aggregated(version, *((group, resources()) for group, resources in groups))
        return web.Response(body=json.dumps(document).encode(), headers={
            "Content-Type": discovery.aggregated_type(version), "Vary": "Accept"})
    return handler


def _matcher(request: web.Request, fields: tuple[str, ...], kind: str) -> Match:
    return matcher(request.query, fields, kind)


def _number(raw: str | None, default: int) -> int:
    try:
        return max(int(raw), 1) if raw else default
    except ValueError:
        return default


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")
