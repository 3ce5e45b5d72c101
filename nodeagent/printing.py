"""kubectl's printing rules, ported: the STATUS word, READY, RESTARTS and AGE of a pod; event ages.

Pure: Kubernetes JSON and a time in, strings out (kubectl's printPod and duration.HumanDuration).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def human_duration(seconds: float) -> str:
    """duration.HumanDuration: 45s, 2m10s, 12m, 3h20m, 2d4h, ..."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: dt.datetime) -> str:
    when = parse_time(timestamp)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


def pod_status_word(pod: dict[str, Any]) -> str:
    """The STATUS column: kubectl's printPod reasoning over phase, init and app container states."""
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase", "Unknown")
    init_statuses = status.get("initContainerStatuses", [])
    init_count = len(pod.get("spec", {}).get("initContainers", []))
    sidecars = sidecar_names(pod)
    initializing = False
    for index, container in enumerate(init_statuses):
        state = container.get("state", {})
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if container.get("name") in sidecars and container.get("started"):
            continue
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode')}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{init_count}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for container in reversed(status.get("containerStatuses", [])):
            state = container.get("state", {})
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                          else f"ExitCode:{terminated.get('exitCode')}")
            elif container.get("ready") and "running" in state:
                has_running = True
        if reason == "Completed" and has_running:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
            reason = "Running" if ready else "NotReady"
    if pod.get("metadata", {}).get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return str(reason)


def sidecar_names(pod: dict[str, Any]) -> set[str]:
    """The init containers with restartPolicy: Always."""
    return {c.get("name") for c in pod.get("spec", {}).get("initContainers", []) if c.get("restartPolicy") == "Always"}


def pod_ready(pod: dict[str, Any]) -> str:
    """READY: ready app containers and started, ready sidecars, of both (kubectl's printPod)."""
    status = pod.get("status", {})
    sidecars = sidecar_names(pod)
    statuses = [*(c for c in status.get("initContainerStatuses", []) if c.get("name") in sidecars and c.get("started")),
                *status.get("containerStatuses", [])]
    total = len(pod.get("spec", {}).get("containers", [])) + len(sidecars)
    ready = sum(1 for c in statuses if c.get("ready") and "running" in c.get("state", {}))
    return f"{ready}/{total}"


def pod_restarts(pod: dict[str, Any], now: dt.datetime) -> str:
    """RESTARTS: the app containers' restarts (the init containers' while initializing), with the
    time of the last one: "3 (25s ago)"."""
    status = pod.get("status", {})
    init = status.get("initContainerStatuses", [])
    names = sidecar_names(pod)
    sidecars = [c for c in init if c.get("name") in names]
    initializing = any(("terminated" not in c.get("state", {}) or c["state"]["terminated"].get("exitCode") != 0)
                       for c in init if c.get("name") not in names)
    containers = init if initializing else [*sidecars, *status.get("containerStatuses", [])]
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    last = None
    for container in containers:
        finished = parse_time(container.get("lastState", {}).get("terminated", {}).get("finishedAt"))
        if finished and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    return str(restarts)


def event_age(event: dict[str, Any], now: dt.datetime) -> str:
    """describe's event age: "25s", or "10s (x3 over 1m)" for a repeated one."""
    last = parse_time(event.get("lastTimestamp"))
    first = parse_time(event.get("firstTimestamp"))
    count = int(event.get("count", 1))
    latest = human_duration((now - last).total_seconds()) if last else "<unknown>"
    if count > 1 and first is not None:
        return f"{latest} (x{count} over {human_duration((now - first).total_seconds())})"
    return latest


# kubectl get pods' columns; priority 1 shows only with -o wide (the Table of meta.k8s.io/v1)
POD_COLUMNS = (("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1),
               ("QoS", 1), ("Source", 1), ("Containers", 1))
SHORT_ID = 13  # crictl's truncated ID length


def pod_row(pod: dict[str, Any], now: dt.datetime) -> list[str]:
    meta, status = pod["metadata"], pod.get("status", {})
    return [meta["name"], pod_ready(pod), pod_status_word(pod), pod_restarts(pod, now),
            age(meta.get("creationTimestamp"), now), status.get("podIP", "<none>"),
            pod.get("spec", {}).get("nodeName", "<none>"), status.get("qosClass", ""),
            meta.get("annotations", {}).get("kubernetes.io/config.source", ""), container_ids(status)]


def container_ids(status: dict[str, Any]) -> str:
    """The app containers' IDs as crictl shows them (13 characters, without the runtime's prefix)."""
    ids = [s["containerID"].partition("://")[2][:SHORT_ID] for s in status.get("containerStatuses", [])
           if s.get("containerID")]
    return ",".join(ids) or "<none>"


def pod_table(pods: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """Pods as a server-side printed `meta.k8s.io/v1 Table`, so the CLI parses rows, not whole pods."""
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": ""},
        "columnDefinitions": [{"name": name, "type": "string", "priority": priority} for name, priority in POD_COLUMNS],
        "rows": [{"cells": pod_row(pod, now),
                  "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"]}}}
                 for pod in pods],
    }
