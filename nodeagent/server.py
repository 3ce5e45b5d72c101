"""The status API: Kubernetes-shaped JSON over a Unix socket (aiohttp), read by the CLI and by scripts, and the
same application over HTTPS for kubectl (nodeagent.apiBindAddress; nodeagent.kubeapi: authentication,
discovery, pods/events/nodes/metrics with selectors, watch and Tables).

    GET /api/v1/pods                                       v1 PodList (?view=table: a meta.k8s.io/v1 Table)
    GET /api/v1/namespaces/{ns}/pods/{name}                v1 Pod (?view=table: its one-row Table)
    GET /api/v1/namespaces/{ns}/pods/{name}/log            ?container=&previous=&follow=&timestamps=&tailLines=
                                                           &limitBytes=&sinceSeconds=&sinceTime=
    GET /api/v1/namespaces/{ns}/pods/{name}/exec           ?command=&container=&stdin=&stdout=&stderr=&tty=
                                                           (also POST): a WebSocket, v5/v4.channel.k8s.io
    GET /api/v1/namespaces/{ns}/pods/{name}/portforward    (also POST): a WebSocket, SPDY/3.1+portforward.k8s.io
    GET /api/v1/events                                     v1 EventList
    GET /apis/metrics.k8s.io/v1beta1/pods                  PodMetricsList (cgroup usage), for `top`
    (and the rest of nodeagent.kubeapi.routes)
    GET /nodeagent/v1/namespaces/{ns}/pods/{name}/cgroups  the plan's files with the kernel's values
    GET /nodeagent/v1/sources                              the sources, and the URL's last fetch
    GET /healthz, /metrics (Prometheus; also on a TCP address when nodeagent.metricsBindAddress is set)

The socket is 0600, or 0660 for a configured group; exec and port-forward on it are for root alone (its
peer's uid). Both listeners have limits (nodeagent.apilimits): time to send a request, idle keep-alive,
connections at once, no request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from nodeagent.agent.events import EventRecorder
from nodeagent.agent.records import State
from nodeagent.agent.view import PodsView, PodView
from nodeagent.apilimits import KEEPALIVE_SECONDS, ConnectionGuard
from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.errors import NodeAgentError
from nodeagent.kubeapi.listener import ApiSettings
from nodeagent.kubeapi.nodes import NodeSampler
from nodeagent.kubeapi.routes import KubeApi
from nodeagent.kubeapi.status import status_error
from nodeagent.kubeapi.watch import PodFeed
from nodeagent.kubestream.exec import serve_attach, serve_exec
from nodeagent.kubestream.portforward import connector, serve_portforward
from nodeagent.metrics import CONTENT_TYPE, AgentMetrics
from nodeagent.runtime.logread import LogOptions, open_log, read_log
from nodeagent.runtime.logs import container_log_path
from nodeagent.timeformat import rfc3339
from nodeagent.usage import UsageSampler

log = logging.getLogger(__name__)


class StatusServer:
    def __init__(self, pods: PodsView, events: EventRecorder, cgroups: CgroupDriver, metrics: AgentMetrics,
                 sources: Callable[[], dict[str, object]], *, node_name: str,
                 logs_dir: str, socket_path: str, socket_group: str | None,
                 metrics_address: str | None = None, api: ApiSettings | None = None,
                 node: Callable[[], dict[str, Any]] = dict) -> None:
        self.pods = pods
        self.events = events
        self.cgroups = cgroups
        self.metrics = metrics
        self.sources = sources
        self.node_name = node_name
        self.logs_dir = logs_dir
        self.socket_path = socket_path
        self.socket_group = socket_group
        self.metrics_address = metrics_address
        self.sampler = UsageSampler(cgroups)
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._listeners: list[asyncio.Server] = []
        self._guard = ConnectionGuard("API socket")
        self.api = api
        self.feed = PodFeed(lambda: [worker.to_json() for worker in self.pods.pods()])
        self.node_sampler = NodeSampler()
        self.kube = KubeApi(self.feed, self._events_json, node, self._pod_metric_items, self._node_metric_items,
                            address=lambda: api.bind_address if api else "")

    def pods_changed(self) -> None:
        """The agent's on_change hook: pods' resource versions and watch events."""
        self.feed.changed()

    def app(self) -> web.Application:
        middlewares = [self._guard.middleware]
        if self.api is not None:
            middlewares.append(self.api.authenticator().middleware)
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prometheus)
        self.kube.add_routes(app)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}/log", self.pod_log)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/{verb}", self.pod_exec)
        app.router.add_route("*", "/api/v1/namespaces/{namespace}/pods/{name}/portforward", self.pod_portforward)
        app.router.add_get("/nodeagent/v1/namespaces/{namespace}/pods/{name}/cgroups", self.pod_cgroups)
        app.router.add_get("/nodeagent/v1/sources", self.source_status)
        return app

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # left by an agent that did not stop cleanly
        self._runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=KEEPALIVE_SECONDS)
        await self._runner.setup()
        old_umask = os.umask(0o117 if self.socket_group else 0o177)  # made with its final mode: no window
        try:
            self._listeners.append(await self._guard.listen(self._runner, path=self.socket_path))
        finally:
            os.umask(old_umask)
        if self.socket_group:  # before anything slower (the HTTPS listener's first PKI)
            group = await asyncio.to_thread(grp.getgrnam, self.socket_group)  # NSS may ask a directory server
            os.chown(self.socket_path, 0, group.gr_gid)
        if self.api is not None and self.api.bind_address:
            await self._listen_https(self._runner, self.api)
        if self.metrics_address:
            host, _, port = self.metrics_address.rpartition(":")
            guard = ConnectionGuard(f"metrics on {self.metrics_address}")
            metrics_app = web.Application(middlewares=[guard.middleware])
            metrics_app.router.add_get("/healthz", self.healthz)
            metrics_app.router.add_get("/metrics", self.prometheus)
            self._metrics_runner = web.AppRunner(metrics_app, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS)
            await self._metrics_runner.setup()
            self._listeners.append(await guard.listen(self._metrics_runner, host=host or "127.0.0.1", port=int(port)))

    async def _listen_https(self, runner: web.AppRunner, api: ApiSettings) -> None:
        """The Kubernetes API: a failure (the port taken, an unwritable stateDir) costs that listener only, as
        the socket and the pods matter more; it is logged as an error."""
        try:
            tls = await asyncio.to_thread(api.prepare)
            guard = ConnectionGuard(f"Kubernetes API on {api.bind_address}")
            self._listeners.append(await guard.listen(runner, host=api.host, port=api.port, tls=tls))
        except (OSError, ValueError) as exc:
            log.error("the Kubernetes API is not served on %s (nodeagent.apiBindAddress): %s", api.bind_address, exc)

    async def stop(self) -> None:
        for listener in self._listeners:
            listener.close()  # no new connections; the runners close the open ones
        self._listeners = []
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._metrics_runner = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    # -- handlers ---------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def source_status(self, request: web.Request) -> web.Response:
        return _json(self.sources())

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    def _worker(self, request: web.Request) -> PodView | web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        worker = self.pods.find(namespace, name)
        if worker is None:
            return status_error(404, "NotFound", f'pods "{name}" not found')
        return worker

    def _events_json(self) -> list[dict[str, Any]]:
        return [event.to_json(self.node_name) for event in self.events.events()]

    async def _node_metric_items(self) -> list[dict[str, Any]]:
        return [await self.node_sampler.metrics(self.node_name)]

    def _streaming_worker(self, request: web.Request) -> PodView | web.Response:
        """The pod for exec and port-forward: on the Unix socket, for root alone (a socketGroup reads only)."""
        if request.method not in ("GET", "POST"):
            return status_error(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                         "resource")
        uid = peer_uid(request)
        if uid is not None and uid != 0:
            verb = request.path.rsplit("/", 1)[-1]
            return status_error(403, "Forbidden", f'pods "{request.match_info["name"]}" is forbidden: {verb} on '
                                                  f"the agent's socket is for root (uid {uid} may only read)")
        return self._worker(request)

    async def pod_portforward(self, request: web.Request) -> web.StreamResponse:
        worker = self._streaming_worker(request)
        if isinstance(worker, web.Response):
            return worker
        running = next((c for name in worker.records if (c := worker.running_container(name)) is not None
                        and c.pid > 0), None)  # any running container's process: they share the network namespace
        if running is None:
            return status_error(400, "BadRequest", f"pod {worker.pod.name} has no running container: its network "
                                                   f"cannot be reached")
        return await serve_portforward(request, connector(running.pid))

    async def pod_exec(self, request: web.Request) -> web.StreamResponse:
        worker = self._streaming_worker(request)
        if isinstance(worker, web.Response):
            return worker
        attach = request.path.endswith("/attach")
        command = request.query.getall("command", [])
        if not command and not attach:
            return status_error(400, "BadRequest", "you must specify at least 1 command")
        container = request.query.get("container") or next((r.name for r in worker.records.values() if not r.init), "")
        if container not in worker.records:
            return status_error(400, "BadRequest", f"container {container} is not valid for pod {worker.pod.name}")
        running = worker.running_container(container)
        if running is None:
            return status_error(400, "BadRequest", f"container {container} is not running")
        if attach:
            return await serve_attach(request, worker.runtime, running)
        return await serve_exec(request, worker.runtime, running, command)

    async def _pod_metric_items(self) -> list[dict[str, Any]]:
        workers = self.pods.pods()
        rates = await self.sampler.rates([plan.path for w in workers for plan in w.plan.containers])
        now = rfc3339(datetime.datetime.now(datetime.UTC))
        items = []
        for worker in workers:
            containers = [{"name": plan.container, "usage": rates[plan.path].usage_json()}
                          for plan in worker.plan.containers if plan.path in rates]
            if containers:
                window = max(rates[plan.path].window_seconds for plan in worker.plan.containers if plan.path in rates)
                items.append({"metadata": {"name": worker.pod.name, "namespace": worker.pod.namespace},
                              "timestamp": now, "window": f"{window:.3f}s", "containers": containers})
        return items

    async def pod_cgroups(self, request: web.Request) -> web.Response:
        worker = self._worker(request)
        if isinstance(worker, web.Response):
            return worker
        plans = ([worker.plan.pod] if worker.plan.pod else []) + list(worker.plan.containers)
        out = []
        for plan in plans:
            data = plan.to_json()
            data["kernel"] = await asyncio.to_thread(self._kernel_values, plan.path, list(plan.files))
            out.append(data)
        return _json({"cgroupVersion": self.cgroups.version, "cgroupDriver": self.cgroups.name, "cgroups": out})

    def _kernel_values(self, path: str, names: list[str]) -> dict[str, str | None]:
        """What the kernel holds now for each planned file (None where the cgroup is absent)."""
        values: dict[str, str | None] = {}
        for name in names:
            try:
                values[name] = self.cgroups.read(path, name).strip()
            except NodeAgentError:
                values[name] = None
        return values

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        if isinstance(worker, web.Response):
            return worker
        query = request.query
        names = [r.name for r in worker.records.values()]
        container = query.get("container") or (names[-1] if len(worker.pod.pod.spec.containers or []) == 1 else "")
        if container not in worker.records:
            if not container:
                app = [r.name for r in worker.records.values() if not r.init]
                return status_error(400, "BadRequest", f"a container name must be specified for pod "
                                                       f"{worker.pod.name}, choose one of: {app}")
            return status_error(400, "BadRequest", f"container {container} is not valid for pod {worker.pod.name}")
        record = worker.records[container]
        previous = query.get("previous") in ("true", "1")
        attempt = record.restart_count - 1 if previous else record.restart_count
        path = container_log_path(self.logs_dir, worker.pod.namespace, worker.pod.name, worker.pod.uid, container,
                                  attempt)
        try:
            options = log_options(query, datetime.datetime.now(datetime.UTC), follow_allowed=not previous)
        except ValueError as exc:
            return status_error(400, "BadRequest", str(exc))
        try:
            if attempt < 0:
                raise FileNotFoundError(path)
            handle = await asyncio.to_thread(open_log, path)
        except FileNotFoundError:
            which = "previous terminated container" if previous else "container"
            return status_error(400, "BadRequest", f'{which} "{container}" in pod "{worker.pod.name}" not found')
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)

        def same_instance_running() -> bool:
            current = worker.records[container]
            return current.restart_count == record.restart_count and current.state is State.RUNNING

        async with contextlib.aclosing(read_log(handle, path, options, same_instance_running)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response


def peer_uid(request: web.Request) -> int | None:
    """The uid of the process at the other end of a Unix-socket request; None on other listeners."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(uid)


def log_options(query: Mapping[str, str], now: datetime.datetime, *, follow_allowed: bool) -> LogOptions:
    """The PodLogOptions of a query, checked as the API server does; ValueError names what is wrong."""
    def flag(name: str) -> bool:
        return query.get(name) in ("true", "1")

    def number(name: str, least: int) -> int | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f'{name}: Invalid value: "{raw}": must be an integer') from None
        if value < least:
            bound = "greater than 0" if least == 1 else "greater than or equal to 0"
            raise ValueError(f"{name}: Invalid value: {value}: must be {bound}")
        return value

    since_seconds = number("sinceSeconds", 1)
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    since = now - datetime.timedelta(seconds=since_seconds) if since_seconds is not None else None
    if since_time is not None:
        try:
            since = datetime.datetime.fromisoformat(since_time)
        except ValueError:
            raise ValueError(f'sinceTime: Invalid value: "{since_time}": must be an RFC3339 time') from None
        if since.tzinfo is None:
            raise ValueError(f'sinceTime: Invalid value: "{since_time}": must be an RFC3339 time') from None
    return LogOptions(tail_lines=number("tailLines", 0), limit_bytes=number("limitBytes", 1), since=since,
                      timestamps=flag("timestamps"), follow=flag("follow") and follow_allowed)


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")
