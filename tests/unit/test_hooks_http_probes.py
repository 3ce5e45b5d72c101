"""httpGet and tcpSocket probes and lifecycle hooks against a server on loopback; exec and sleep hooks on the
fake runtime and clock."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from nodeagent.agent.clock import SystemClock
from nodeagent.agent.hooks import run_hook
from nodeagent.agent.probes import probe_once
from nodeagent.api.model import Container, LifecycleHandler, Probe
from nodeagent.runtime.base import ExecResult
from tests.conftest import load_pod
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRunning, FakeRuntime


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="x" * 50_000)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield bound
    finally:
        await runner.cleanup()


def container(port: int, extra: str = "") -> Container:
    pod = load_pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  containers:\n"
                   f"  - name: c\n    image: busybox\n    ports: [{{name: web, containerPort: {port}}}]\n{extra}")
    return pod.pod.all_containers()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def check(spec: Container, probe: Probe) -> tuple[bool, str]:
    clock = SystemClock()
    result = await probe_once(probe, runtime=FakeRuntime(FakeClock()), running=FakeRunning(FakeClock(), "fake://c"),
                              container=spec, pod_ip="127.0.0.1", clock=clock)
    return result.ok, result.output


async def test_http_get_probes(port: int) -> None:
    spec = container(port, "    readinessProbe: {httpGet: {path: /ok, port: web}}\n"
                           "    livenessProbe: {httpGet: {path: /broken, port: web}}\n")
    assert spec.readiness_probe is not None and spec.liveness_probe is not None
    assert await check(spec, spec.readiness_probe) == (True, "")
    assert await check(spec, spec.liveness_probe) == (False, "HTTP probe failed with statuscode: 500")


async def test_tcp_socket_probes(port: int) -> None:
    closed = free_port()
    spec = container(port, f"    readinessProbe: {{tcpSocket: {{port: {port}}}}}\n"
                           f"    livenessProbe: {{tcpSocket: {{port: {closed}}}}}\n")
    assert spec.readiness_probe is not None and spec.liveness_probe is not None
    assert await check(spec, spec.readiness_probe) == (True, "")
    ok, output = await check(spec, spec.liveness_probe)
    assert not ok and output.startswith(f"dial tcp 127.0.0.1:{closed}: ")


async def test_an_http_probe_to_nothing_fails(port: int) -> None:
    spec = container(port, f"    readinessProbe: {{httpGet: {{path: /, port: {free_port()}}}}}\n")
    assert spec.readiness_probe is not None
    ok, output = await check(spec, spec.readiness_probe)
    assert not ok and output.startswith('Get "http://127.0.0.1:')


async def hook(spec: Container, handler: LifecycleHandler, runtime: FakeRuntime | None = None,
               timeout: float = 5) -> str | None:
    clock = FakeClock()
    return await run_hook(handler, runtime=runtime or FakeRuntime(clock), running=FakeRunning(clock, "fake://c"),
                          container=spec, pod_ip="127.0.0.1", timeout=timeout, clock=SystemClock())


def handlers(spec: Container) -> tuple[LifecycleHandler, LifecycleHandler]:
    assert spec.lifecycle is not None and spec.lifecycle.post_start is not None
    assert spec.lifecycle.pre_stop is not None
    return spec.lifecycle.post_start, spec.lifecycle.pre_stop


async def test_http_hooks(port: int) -> None:
    spec = container(port, "    lifecycle:\n      postStart: {httpGet: {path: /ok, port: web}}\n"
                           f"      preStop: {{httpGet: {{path: /x, port: {free_port()}}}}}\n")
    post_start, pre_stop = handlers(spec)
    assert await hook(spec, post_start) is None  # the 50 kB answer is read up to 10 KiB only
    failure = await hook(spec, pre_stop)
    assert failure is not None and failure.startswith('HTTP lifecycle hook (/x) for Container "c" failed')


async def test_an_http_hook_on_an_unknown_named_port(port: int) -> None:
    spec = container(port, "    lifecycle:\n      postStart: {httpGet: {path: /ok, port: nope}}\n"
                           "      preStop: {sleep: {seconds: 1}}\n")
    post_start, _ = handlers(spec)
    assert await hook(spec, post_start) == 'HTTP lifecycle hook: port "nope" is not a named port of container "c"'


async def test_exec_and_sleep_hooks(port: int) -> None:
    spec = container(port, "    lifecycle:\n      postStart: {exec: {command: [setup, now]}}\n"
                           "      preStop: {sleep: {seconds: 1}}\n")
    post_start, pre_stop = handlers(spec)
    runtime = FakeRuntime(FakeClock(), exec_results=deque([ExecResult(0, ""), ExecResult(7, "nope")]))
    assert await hook(spec, post_start, runtime) is None
    assert await hook(spec, post_start, runtime) == (
        "Exec lifecycle hook (['setup', 'now']) for Container \"c\" failed - error: command 'setup now' exited "
        "with 7: nope")
    clock = FakeClock()

    async def sleep_hook(timeout: float) -> str | None:
        return await run_hook(pre_stop, runtime=runtime, running=FakeRunning(clock, "fake://c"), container=spec,
                              pod_ip="127.0.0.1", timeout=timeout, clock=clock)

    slept = asyncio.create_task(sleep_hook(5))
    await clock.advance(0.9)
    assert not slept.done()
    await clock.advance(0.1)
    assert slept.done() and slept.result() is None
    cut = asyncio.create_task(sleep_hook(0.5))
    await clock.advance(0.5)
    assert cut.result() == "the hook did not finish within 0s"  # 0.5 s, shown in whole seconds
