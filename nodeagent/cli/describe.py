"""`describe pod`: kubectl's layout, plus what a node agent knows: cgroup paths and the kernel's values.

Pure: the pod, its events and its cgroups (JSON from the agent) in, text out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from nodeagent.cli.output import table
from nodeagent.printing import event_age, human_duration, parse_time, pod_status_word


def _when(value: str | None) -> str:
    when = parse_time(value)
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000") if when else "<unknown>"


def _mapping(title: str, values: dict[str, str] | None, separator: str) -> list[str]:
    if not values:
        return [f"{title:<18}<none>"]
    return [f"{(title if index == 0 else ''):<18}{key}{separator}{value}"
            for index, (key, value) in enumerate(sorted(values.items()))]


def describe_pod(pod: dict[str, Any], events: list[dict[str, Any]], cgroups: dict[str, Any] | None,
                 now: dt.datetime, sources: dict[str, Any] | None = None) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    host_ip = status.get("hostIP", "")
    lines = [
        f"{'Name:':<18}{meta.get('name')}",
        f"{'Namespace:':<18}{meta.get('namespace')}",
        f"{'Priority:':<18}{spec.get('priority', 0)}",
    ]
    if spec.get("priorityClassName"):
        lines.append(f"{'Priority Class:':<18}{spec['priorityClassName']}")
    lines.append(f"{'Node:':<18}{spec.get('nodeName')}/{host_ip}")
    if status.get("startTime"):
        lines.append(f"{'Start Time:':<18}{_when(status.get('startTime'))}")
    lines += _source(meta.get("annotations", {}), sources or {}, now)
    lines += _mapping("Labels:", meta.get("labels"), "=")
    lines += _mapping("Annotations:", meta.get("annotations"), ": ")
    lines.append(f"{'Status:':<18}{pod_status_word(pod) if meta.get('deletionTimestamp') else status.get('phase')}")
    if status.get("reason"):
        lines.append(f"{'Reason:':<18}{status['reason']}")
    if status.get("message"):
        lines.append(f"{'Message:':<18}{status['message']}")
    lines.append(f"{'IP:':<18}{status.get('podIP', '')}")
    if status.get("podIPs"):
        lines += ["IPs:"] + [f"  IP:  {ip['ip']}" for ip in status["podIPs"]]
    cgroup_by_container = {c.get("container"): c for c in (cgroups or {}).get("cgroups", [])}
    for title, field, statuses in (("Init Containers:", "initContainers", status.get("initContainerStatuses", [])),
                                   ("Containers:", "containers", status.get("containerStatuses", []))):
        containers = spec.get(field, [])
        if not containers:
            continue
        lines.append(title)
        by_name = {s.get("name"): s for s in statuses}
        for container in containers:
            lines += _container(container, by_name.get(container.get("name"), {}),
                                cgroup_by_container.get(container.get("name")))
    lines.append("Conditions:")
    lines += ["  " + line for line in table(["Type", "Status"], [[c["type"], c["status"]]
                                                                  for c in status.get("conditions", [])]).splitlines()]
    lines += _volumes(spec.get("volumes", []))
    lines.append(f"{'QoS Class:':<29}{status.get('qosClass', '')}")
    pod_cgroup = cgroup_by_container.get(None)
    if cgroups is not None:
        lines.append(f"{'Cgroups:':<29}v{cgroups.get('cgroupVersion')}, {cgroups.get('cgroupDriver')} driver")
    if pod_cgroup is not None:
        lines.append(f"{'Pod Cgroup:':<29}{pod_cgroup['path']}")
        lines += _files(pod_cgroup, "  ")
    lines += _events(events, now)
    return "\n".join(lines)


def _source(annotations: dict[str, str], sources: dict[str, Any], now: dt.datetime) -> list[str]:
    """Where the pod comes from; for the URL, the last fetch and its result."""
    kind = annotations.get("kubernetes.io/config.source", "")
    line = f"{'Source:':<18}{kind} {annotations.get('nodeagent/config.origin', '')}".rstrip()
    http = sources.get("http")
    if kind == "http" and http:
        fetched = parse_time(http.get("lastFetch"))
        when = f"{human_duration((now - fetched).total_seconds())} ago" if fetched else "never"
        line += f" (last fetched {when}: {http.get('lastResult')})"
    return [line]


def _container(container: dict[str, Any], status: dict[str, Any], cgroup: dict[str, Any] | None) -> list[str]:
    i = "    "
    lines = [f"  {container.get('name')}:"]
    lines.append(f"{i}{'Container ID:':<15}{status.get('containerID', '')}")
    lines.append(f"{i}{'Image:':<15}{container.get('image', '')}")
    lines.append(f"{i}{'Image ID:':<15}{status.get('imageID', '')}")
    ports = container.get("ports", [])
    lines.append(f"{i}{'Port:':<15}" + (", ".join(f"{p['containerPort']}/{p.get('protocol', 'TCP')}" for p in ports)
                                         if ports else "<none>"))
    for field in ("command", "args"):
        if container.get(field):
            lines.append(f"{i}{field.capitalize()}:")
            lines += [f"{i}  {part}" for part in container[field]]
    lines += _state("State:", status.get("state", {}), i)
    if status.get("lastState"):
        lines += _state("Last State:", status["lastState"], i)
    lines.append(f"{i}{'Ready:':<15}{status.get('ready', False)}")
    lines.append(f"{i}{'Restart Count:':<15}{status.get('restartCount', 0)}")
    resources = container.get("resources", {})
    for title in ("limits", "requests"):
        if resources.get(title):
            lines.append(f"{i}{title.capitalize()}:")
            lines += [f"{i}  {name}:  {value}" for name, value in sorted(resources[title].items())]
    env = container.get("env", [])
    if env:
        lines.append(f"{i}Environment:")
        for var in env:
            source = var.get("valueFrom", {})
            if "fieldRef" in source:
                value = f" ({source['fieldRef'].get('apiVersion', 'v1')}:{source['fieldRef'].get('fieldPath')})"
            elif "resourceFieldRef" in source:
                value = f" ({source['resourceFieldRef'].get('resource')})"
            else:
                value = var.get("value", "")
            lines.append(f"{i}  {var.get('name')}:{' ' if value and not value.startswith(' ') else ''}{value}")
    else:
        lines.append(f"{i}{'Environment:':<15}<none>")
    mounts = container.get("volumeMounts", [])
    lines.append(f"{i}Mounts:" if mounts else f"{i}{'Mounts:':<15}<none>")
    lines += [f"{i}  {m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
              for m in mounts]
    if cgroup is not None:
        lines.append(f"{i}{'Cgroup:':<15}{cgroup['path']}")
        if cgroup.get("oomScoreAdj") is not None:
            lines.append(f"{i}  oom_score_adj: {cgroup['oomScoreAdj']}")
        lines += _files(cgroup, i + "  ")
    return lines


def _files(cgroup: dict[str, Any], indent: str) -> list[str]:
    """Each planned file with its value; the kernel's value beside it when the cgroup exists."""
    kernel = cgroup.get("kernel", {})
    lines = []
    for name, value in cgroup.get("files", {}).items():
        actual = kernel.get(name)
        seen = "" if actual is None else (" (in the kernel)" if actual == value else f" (kernel: {actual})")
        lines.append(f"{indent}{name}: {value}{seen}")
    return lines


def _state(title: str, state: dict[str, Any], indent: str) -> list[str]:
    if "running" in state:
        return [f"{indent}{title:<15}Running", f"{indent}  {'Started:':<13}{_when(state['running'].get('startedAt'))}"]
    if "terminated" in state:
        done = state["terminated"]
        lines = [f"{indent}{title:<15}Terminated", f"{indent}  {'Reason:':<13}{done.get('reason', '')}"]
        if done.get("message"):
            lines.append(f"{indent}  {'Message:':<13}{done['message']}")
        lines.append(f"{indent}  {'Exit Code:':<13}{done.get('exitCode')}")
        if done.get("signal"):
            lines.append(f"{indent}  {'Signal:':<13}{done['signal']}")
        lines += [f"{indent}  {'Started:':<13}{_when(done.get('startedAt'))}",
                  f"{indent}  {'Finished:':<13}{_when(done.get('finishedAt'))}"]
        return lines
    if "waiting" in state:
        waiting = state["waiting"]
        lines = [f"{indent}{title:<15}Waiting"]
        if waiting.get("reason"):
            lines.append(f"{indent}  {'Reason:':<13}{waiting['reason']}")
        if waiting.get("message"):
            lines.append(f"{indent}  {'Message:':<13}{waiting['message']}")
        return lines
    return []


def _volumes(volumes: list[dict[str, Any]]) -> list[str]:
    if not volumes:
        return [f"{'Volumes:':<29}<none>"]
    lines = ["Volumes:"]
    for volume in volumes:
        lines.append(f"  {volume.get('name')}:")
        if "emptyDir" in volume:
            medium = volume["emptyDir"].get("medium", "")
            lines += ["    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)",
                      f"    Medium:     {medium}"]
            if volume["emptyDir"].get("sizeLimit"):
                lines.append(f"    SizeLimit:  {volume['emptyDir']['sizeLimit']}")
        elif "hostPath" in volume:
            lines += ["    Type:          HostPath (bare host directory volume)",
                      f"    Path:          {volume['hostPath'].get('path')}",
                      f"    HostPathType:  {volume['hostPath'].get('type', '')}"]
    return lines


def _events(events: list[dict[str, Any]], now: dt.datetime) -> list[str]:
    if not events:
        return ["Events:                      <none>"]
    rows = [[e.get("type", ""), e.get("reason", ""), event_age(e, now),
             e.get("source", {}).get("component", "nodeagent"), e.get("message", "")] for e in events]
    rendered = table(["Type", "Reason", "Age", "From", "Message"],
                     [["----", "------", "----", "----", "-------"], *rows])
    return ["Events:"] + ["  " + line for line in rendered.splitlines()]
