"""Lifecycle hooks (postStart, preStop) as the kubelet runs them: exec in the container, HTTP GET, sleep.

An httpGet hook's answer is read up to 10 KiB (the kubelet's maxRespBodyLength), whatever its size.
Returns None when the hook succeeded, else the kubelet's description of the failure, which the
worker turns into FailedPostStartHook / FailedPreStopHook events.
"""

from __future__ import annotations

import logging

import aiohttp

from nodeagent.agent.clock import Clock, within
from nodeagent.agent.httpurl import http_get_url
from nodeagent.api.model import Container, HTTPGetAction, LifecycleHandler
from nodeagent.runtime.base import RunningContainer, Runtime

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024  # the kubelet's maxRespBodyLength: what it reads of a hook's (or probe's) answer


async def discard_body(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> None:
    """Read at most `limit` bytes of the body and drop them, as the kubelet's discardHTTPRespBody; the rest
    is never read (the connection is closed instead)."""
    while limit > 0 and (chunk := await response.content.read(limit)):
        limit -= len(chunk)


async def run_hook(handler: LifecycleHandler, *, runtime: Runtime, running: RunningContainer, container: Container,
                   pod_ip: str, timeout: float, clock: Clock) -> str | None:
    try:
        return await within(clock, timeout, _run(handler, runtime, running, container, pod_ip, timeout, clock))
    except TimeoutError:
        return f"the hook did not finish within {timeout:.0f}s"


async def _run(handler: LifecycleHandler, runtime: Runtime, running: RunningContainer, container: Container,
               pod_ip: str, timeout: float, clock: Clock) -> str | None:
    if handler.exec is not None:
        command = list(handler.exec.command or [])
        result = await runtime.exec(running, command, timeout)
        if result.exit_code != 0:
            return (f"Exec lifecycle hook ({command}) for Container \"{container.name}\" failed - error: command "
                    f"'{' '.join(command)}' exited with {result.exit_code}: {result.output}")
        return None
    if handler.http_get is not None:
        return await _http_get(handler.http_get, container, pod_ip, timeout)
    if handler.sleep is not None:
        await clock.sleep(handler.sleep.seconds or 0)
        return None
    return "tcpSocket lifecycle hooks are not supported (as in the kubelet)"


async def _http_get(action: HTTPGetAction, container: Container, pod_ip: str, timeout: float) -> str | None:
    port = action.port
    if isinstance(port, str):
        named = {p.name: p.container_port for p in container.ports or [] if p.name}
        if port not in named:
            return f'HTTP lifecycle hook: port "{port}" is not a named port of container "{container.name}"'
        port = named[port]
    url = http_get_url(action.scheme, action.host or pod_ip, port, action.path)
    headers = {h.name or "": h.value or "" for h in action.http_headers or []}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.get(url, headers=headers, ssl=False) as response:
            await discard_body(response)
    except (aiohttp.ClientError, OSError) as exc:
        return (f"HTTP lifecycle hook ({action.path}) for Container \"{container.name}\" failed - error: "
                f"Get \"{url}\": {exc}")
    return None
