"""Where the CRI runtime listens: containerRuntimeEndpoint when set, else found like kubeadm finds it.

    parse_endpoint("/run/containerd/containerd.sock")   -> "unix:///run/containerd/containerd.sock"
    await discover_endpoint(None)                        -> the one known socket whose runtime answers Version

kubeadm picks among the known sockets that exist; nodeagent also asks each one for its Version, so a
stale socket file left by a stopped runtime does not count. None or several answering is an error
that names every candidate, as kubeadm's "found multiple CRI endpoints on the host" does.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from nodeagent.runtime.cri.client import CRIClient, Deadlines
from nodeagent.runtime.cri.errors import CRIEndpointError, CRIError

KNOWN_ENDPOINTS = (
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
)
PROBE_TIMEOUT_S = 2.0


def parse_endpoint(value: str) -> str:
    """containerRuntimeEndpoint ("unix:///path" or an absolute path, as the kubelet accepts) as unix:///path."""
    if value.startswith("/"):
        return f"unix://{value}"
    parsed = urlparse(value)
    if parsed.scheme == "unix" and not parsed.netloc and parsed.path.startswith("/"):
        return f"unix://{parsed.path}"
    if parsed.scheme in ("", "unix"):
        raise CRIEndpointError(f"containerRuntimeEndpoint {value!r}: expected unix:///absolute/path/to.sock")
    raise CRIEndpointError(f"containerRuntimeEndpoint {value!r}: protocol {parsed.scheme!r} not supported, "
                           "only unix:///path")


async def probe_endpoint(endpoint: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a runtime answers Version on the endpoint, else why not."""
    path = Path(urlparse(endpoint).path)
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            return "not a socket"
    except FileNotFoundError:
        return "no socket"
    except OSError as error:
        return error.strerror or str(error)
    async with CRIClient(endpoint, deadlines=Deadlines(status_s=timeout_s)) as client:
        try:
            await client.version()
        except CRIError as error:
            return f"{error.code}: {error.message}" if error.message else error.code
    return None


async def discover_endpoint(configured: str | None, *, candidates: Sequence[str] = KNOWN_ENDPOINTS,
                            timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """The configured endpoint (normalized, not probed: the runtime may start later), else the one
    candidate that answers; CRIEndpointError when none or several do."""
    if configured:
        return parse_endpoint(configured)
    async with asyncio.TaskGroup() as group:
        probes = [group.create_task(probe_endpoint(candidate, timeout_s=timeout_s)) for candidate in candidates]
    failures = {candidate: probe.result() for candidate, probe in zip(candidates, probes, strict=True)}
    answering = [candidate for candidate, failure in failures.items() if failure is None]
    if len(answering) == 1:
        return answering[0]
    if answering:
        raise CRIEndpointError("found multiple CRI endpoints on the host. Please define which one you wish to use "
                               "by setting containerRuntimeEndpoint in the configuration: " + ", ".join(answering))
    tried = "; ".join(f"{candidate}: {failure}" for candidate, failure in failures.items())
    raise CRIEndpointError(f"no container runtime answers on the known CRI endpoints ({tried}): start one, or "
                           "set containerRuntimeEndpoint in the configuration")
