"""Startup, liveness and readiness probes, as the kubelet's prober runs them.

    startupProbe   until it succeeds the other two wait; failureThreshold failures kill the container
    livenessProbe  failureThreshold failures in a row kill the container (it restarts per its policy)
    readinessProbe successThreshold successes make the container ready, failureThreshold failures unready

Each probe waits initialDelaySeconds after the start, then runs every periodSeconds within
timeoutSeconds: exec (exit code 0), httpGet (a status from 200 to 399), tcpSocket (a connection), grpc
(the health protocol's SERVING, grpcprobe.py). An httpGet probe's body is not read at all (the kubelet
reads 10 KiB of it, only to log it): the status decides, and the connection is closed; an exec probe's
output is read with a cap (runtime/execoutput.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from nodeagent.agent import grpcprobe
from nodeagent.agent.clock import Clock, within
from nodeagent.agent.events import NORMAL, WARNING, EventRecorder, ObjectRef
from nodeagent.agent.httpurl import http_get_url
from nodeagent.api.model import Container, Probe
from nodeagent.runtime.base import RunningContainer, Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    output: str = ""
    errored: bool = False  # the probe could not run (the runtime is away): neither success nor failure


def _port(value: int | str | None, container: Container) -> int | None:
    if isinstance(value, int):
        return value
    named = {p.name: p.container_port for p in container.ports or [] if p.name}
    return named.get(value) if value else None


async def probe_once(probe: Probe, *, runtime: Runtime, running: RunningContainer, container: Container,
                     pod_ip: str, clock: Clock) -> ProbeResult:
    """One run of a probe, within its timeoutSeconds."""
    timeout = float(probe.timeout_seconds)
    try:
        return await within(clock, timeout, _run(probe, runtime, running, container, pod_ip, timeout))
    except TimeoutError:
        return ProbeResult(False, f"timeout: no answer within {probe.timeout_seconds}s")


async def _run(probe: Probe, runtime: Runtime, running: RunningContainer, container: Container, pod_ip: str,
               timeout: float) -> ProbeResult:
    if probe.exec is not None:
        result = await runtime.exec(running, list(probe.exec.command or []), timeout)
        return ProbeResult(result.exit_code == 0, result.output or f"exit code {result.exit_code}",
                           errored=result.runtime_away)
    if probe.http_get is not None:
        action = probe.http_get
        port = _port(action.port, container)
        url = http_get_url(action.scheme, action.host or pod_ip, port, action.path)
        headers = {h.name or "": h.value or "" for h in action.http_headers or []}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                    session.get(url, headers=headers, ssl=False, allow_redirects=False) as response:
                ok = 200 <= response.status < 400
                return ProbeResult(ok, "" if ok else f"HTTP probe failed with statuscode: {response.status}")
        except (aiohttp.ClientError, OSError) as exc:
            return ProbeResult(False, f'Get "{url}": {exc}')
    if probe.tcp_socket is not None:
        host = probe.tcp_socket.host or pod_ip
        port = _port(probe.tcp_socket.port, container)
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            return ProbeResult(False, f"dial tcp {host}:{port}: {exc.strerror or exc}")
        writer.close()
        return ProbeResult(True)
    if probe.grpc is not None and probe.grpc.port is not None:
        healthy, message = await grpcprobe.check(pod_ip, probe.grpc.port, probe.grpc.service or "", timeout)
        return ProbeResult(healthy, "" if healthy else message)
    return ProbeResult(False, "the probe has no action")  # validation refuses such a probe


@dataclass
class ProbeCallbacks:
    """What the prober tells the pod worker."""

    ready: Callable[[bool], None]
    failed: Callable[[str, ProbeResult], None]  # (kind, result): an Unhealthy event
    kill: Callable[[str, Probe], Awaitable[None]]  # (reason message, the probe that failed): kill the container
    started: Callable[[], None]  # the startupProbe passed (at once without one): the container counts as started


def reporting_callbacks(ref: ObjectRef, events: EventRecorder, ready: Callable[[bool], None],
                        stop: Callable[[Probe], Awaitable[None]], started: Callable[[], None]) -> ProbeCallbacks:
    """The kubelet's: an Unhealthy event per failure; a kill's Killing event, then `stop` (its probe's grace)."""
    def failed(kind: str, result: ProbeResult) -> None:
        events.record(ref, WARNING, "Unhealthy", f"{kind} probe failed: {result.output}".rstrip(": "))

    async def kill(message: str, probe: Probe) -> None:
        events.record(ref, NORMAL, "Killing", message)
        await stop(probe)

    return ProbeCallbacks(ready=ready, failed=failed, kill=kill, started=started)


async def run_probes(container: Container, *, runtime: Runtime, running: RunningContainer, pod_ip: str,
                     callbacks: ProbeCallbacks, clock: Clock) -> None:
    """The probes of one running container, until it ends (the caller cancels this)."""

    async def once(probe: Probe) -> ProbeResult:
        return await probe_once(probe, runtime=runtime, running=running, container=container, pod_ip=pod_ip,
                                clock=clock)

    startup = container.startup_probe
    if startup is not None and not await _until_success(startup, once, "Startup", callbacks, clock):
        await callbacks.kill(f"Container {container.name} failed startup probe, will be restarted", startup)
        return
    callbacks.started()
    loops = []
    if container.liveness_probe is not None:
        loops.append(_liveness(container, container.liveness_probe, once, callbacks, clock))
    if container.readiness_probe is not None:
        loops.append(_readiness(container.readiness_probe, once, callbacks, clock))
    else:
        callbacks.ready(True)
    await asyncio.gather(*loops)


async def _counted(probe: Probe, once: Callable[[Probe], Awaitable[ProbeResult]], clock: Clock) -> ProbeResult:
    """The next result that counts. One the runtime could not produce (away, restarting) is thrown away, as
    the kubelet's prober worker does: a runtime restart must not fail the probes of healthy containers."""
    while (result := await once(probe)).errored:
        log.debug("probe not run (%s); trying again in %ds", result.output, probe.period_seconds)
        await clock.sleep(probe.period_seconds)
    return result


async def _until_success(probe: Probe, once: Callable[[Probe], Awaitable[ProbeResult]], kind: str,
                         callbacks: ProbeCallbacks, clock: Clock) -> bool:
    await clock.sleep(probe.initial_delay_seconds)
    failures = 0
    while True:
        result = await _counted(probe, once, clock)
        if result.ok:
            return True
        failures += 1
        callbacks.failed(kind, result)
        if failures >= probe.failure_threshold:
            return False
        await clock.sleep(probe.period_seconds)


async def _liveness(container: Container, probe: Probe, once: Callable[[Probe], Awaitable[ProbeResult]],
                    callbacks: ProbeCallbacks, clock: Clock) -> None:
    await clock.sleep(probe.initial_delay_seconds)
    failures = 0
    while True:
        result = await _counted(probe, once, clock)
        failures = 0 if result.ok else failures + 1
        if not result.ok:
            callbacks.failed("Liveness", result)
            if failures >= probe.failure_threshold:
                await callbacks.kill(f"Container {container.name} failed liveness probe, will be restarted", probe)
                return
        await clock.sleep(probe.period_seconds)


async def _readiness(probe: Probe, once: Callable[[Probe], Awaitable[ProbeResult]],
                     callbacks: ProbeCallbacks, clock: Clock) -> None:
    await clock.sleep(probe.initial_delay_seconds)
    successes = failures = 0
    ready = False
    while True:
        result = await _counted(probe, once, clock)
        if result.ok:
            successes, failures = successes + 1, 0
            if not ready and successes >= probe.success_threshold:
                ready = True
                callbacks.ready(True)
        else:
            successes, failures = 0, failures + 1
            callbacks.failed("Readiness", result)
            if ready and failures >= probe.failure_threshold:
                ready = False
                callbacks.ready(False)
        await clock.sleep(probe.period_seconds)
