"""The client commands: get, describe, logs, events, top. Each talks to the agent only over its socket.

Exit codes: 0 done, 1 the agent is not answering or the pod is not found (one line on stderr).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

from nodeagent.cli.client import AgentClient, ApiError, pod_url, socket_path
from nodeagent.cli.output import examples, fail, print_data, table
from nodeagent.defaults import SOCKET_PATH
from nodeagent.errors import AgentUnavailableError
from nodeagent.printing import age

P = ParamSpec("P")
R = TypeVar("R")
OUTPUTS = click.Choice(["wide", "json", "yaml"])


def with_agent(command: Callable[P, R]) -> Callable[P, R]:
    """Adds --socket and turns an absent agent or an API error into one line and exit 1."""

    @click.option("--socket", "socket_option", help="The agent's socket (default: $NODEAGENT_SOCKET, the "
                                                     f"configured one, {SOCKET_PATH}).")
    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (AgentUnavailableError, ApiError) as exc:
            fail(str(exc))
            raise  # unreachable: fail() exits

    return wrapper


def client(socket_option: str | None) -> AgentClient:
    return AgentClient(socket_path(socket_option))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def resolve(pods: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """NAMESPACE/NAME, a NAME (any namespace), or the manifest's name without the node suffix: the pod
    that alone matches."""
    namespace, _, name = wanted.rpartition("/")

    def named(pod: dict[str, Any]) -> bool:
        return bool(pod["metadata"]["name"] == name and (not namespace or pod["metadata"]["namespace"] == namespace))

    def short(pod: dict[str, Any]) -> bool:
        node = pod.get("spec", {}).get("nodeName", "").lower()
        return bool(pod["metadata"]["name"] == f"{name}-{node}"
                    and (not namespace or pod["metadata"]["namespace"] == namespace))

    for test in (named, short):
        found = [pod for pod in pods if test(pod)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in found)
            fail(f'pod "{wanted}" is ambiguous: {names}; say NAMESPACE/NAME')
    fail(f'pods "{wanted}" not found')
    raise AssertionError  # unreachable


def find_pod(agent: AgentClient, wanted: str) -> dict[str, Any]:
    return resolve(agent.pods(), wanted)


def render_table(server_table: dict[str, Any], wide: bool, all_namespaces: bool) -> str:
    """A meta.k8s.io/v1 Table as kubectl prints it: priority-1 columns only when wide."""
    shown = [i for i, column in enumerate(server_table["columnDefinitions"]) if wide or column["priority"] == 0]
    headers = [server_table["columnDefinitions"][i]["name"].upper() for i in shown]
    rows = [[str(row["cells"][i]) for i in shown] for row in server_table["rows"]]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
        for row, source in zip(rows, server_table["rows"], strict=True):
            row.insert(0, source["object"]["metadata"]["namespace"])
    return table(headers, rows)


@click.group(epilog=examples("nodeagent get pods -A", "nodeagent get pod memory-demo-2 -o yaml"))
def get() -> None:
    """Display pods (kubectl get)."""


@get.command("pods", epilog=examples("nodeagent get pods", "nodeagent get pods -o wide -n mem-example",
                                             "nodeagent get pods -o json | jq '.items[].status.phase'"))
@click.option("-o", "--output", type=OUTPUTS)
@click.option("-n", "--namespace", help="Only pods in this namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Show the NAMESPACE column.")
@with_agent
def get_pods(output: str | None, namespace: str | None, all_namespaces: bool, socket_option: str | None) -> None:
    """NAME READY STATUS RESTARTS AGE of every pod (wide: + IP, NODE, QOS, SOURCE)."""
    agent = client(socket_option)
    if output in ("json", "yaml"):
        pods = [p for p in agent.pods() if not namespace or p["metadata"]["namespace"] == namespace]
        print_data({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": ""}, "items": pods},
                   output)
        return
    server_table = agent.get("/api/v1/pods", view="table")
    if namespace:
        server_table["rows"] = [r for r in server_table["rows"] if r["object"]["metadata"]["namespace"] == namespace]
    if not server_table["rows"]:
        click.echo("No resources found", err=True)
    else:
        click.echo(render_table(server_table, output == "wide", all_namespaces))


@get.command("pod", epilog=examples("nodeagent get pod memory-demo-2",
                                            "nodeagent get pod mem-example/memory-demo-2-node1 -o yaml"))
@click.argument("name")
@click.option("-o", "--output", type=OUTPUTS)
@with_agent
def get_pod(name: str, output: str | None, socket_option: str | None) -> None:
    """One pod, by NAME or NAMESPACE/NAME."""
    agent = client(socket_option)
    pod = find_pod(agent, name)
    if output in ("json", "yaml"):
        print_data(pod, output)
    else:
        meta = pod["metadata"]
        click.echo(render_table(agent.get(pod_url(meta["namespace"], meta["name"]), view="table"), output == "wide",
                                False))


@click.group(epilog=examples("nodeagent describe pod memory-demo-2"))
def describe() -> None:
    """Show details of a pod (kubectl describe)."""


@describe.command("pod", epilog=examples("nodeagent describe pod memory-demo-2",
                                                 "nodeagent describe pod mem-example/memory-demo-2-node1"))
@click.argument("name")
@with_agent
def describe_pod_command(name: str, socket_option: str | None) -> None:
    """Spec summary, container states, cgroup paths and values, events."""
    from nodeagent.cli.describe import describe_pod  # loaded by the one command that prints it

    agent = client(socket_option)
    pod = find_pod(agent, name)
    meta = pod["metadata"]
    events = [e for e in agent.events() if e.get("involvedObject", {}).get("uid") == meta.get("uid")]
    cgroups = agent.get(pod_url(meta["namespace"], meta["name"]).replace("/api/v1/", "/nodeagent/v1/") + "/cgroups")
    click.echo(describe_pod(pod, events, cgroups, now(), agent.get("/nodeagent/v1/sources")))


@click.command(epilog=examples("nodeagent logs memory-demo-2",
                               "nodeagent logs memory-demo-2 -c memory-demo-2-ctr --previous",
                               "nodeagent logs -f --timestamps static-web"))
@click.argument("pod")
@click.option("-c", "--container", help="Default: the only container.")
@click.option("-p", "--previous", is_flag=True, help="The previous instance of the container.")
@click.option("-f", "--follow", is_flag=True, help="Stream until the container stops.")
@click.option("--timestamps", is_flag=True)
@click.option("--tail", type=int, default=-1, show_default=True,
              help="Lines of the most recent log to show; -1: all.")
@click.option("--limit-bytes", type=int, help="The most bytes of the log to show.")
@click.option("--since", type=str, help="Only newer logs, as a duration (5s, 2m, 3h).")
@click.option("--since-time", type=str, help="Only logs after this RFC3339 time.")
@with_agent
def logs(pod: str, container: str | None, previous: bool, follow: bool, timestamps: bool, tail: int,
         limit_bytes: int | None, since: str | None, since_time: str | None, socket_option: str | None) -> None:
    """Print a container's logs (kubectl logs)."""
    if since and since_time:
        raise click.UsageError("at most one of --since-time or --since may be specified")
    agent = client(socket_option) if not follow else AgentClient(socket_path(socket_option), timeout=None)
    found = find_pod(agent, pod)
    query = {"previous": str(previous).lower(), "follow": str(follow).lower(), "timestamps": str(timestamps).lower()}
    if container:
        query["container"] = container
    if tail >= 0:
        query["tailLines"] = str(tail)
    if limit_bytes is not None:
        query["limitBytes"] = str(limit_bytes)
    if since:
        from nodeagent.config import parse_duration_ns  # pydantic and yaml: only for the command that needs them

        try:
            seconds = parse_duration_ns(since) / 1e9
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        query["sinceSeconds"] = str(max(1, math.ceil(seconds)))  # kubectl rounds up to whole seconds
    if since_time:
        query["sinceTime"] = since_time
    meta = found["metadata"]
    out = sys.stdout.buffer
    for chunk in agent.stream(pod_url(meta["namespace"], meta["name"]) + "/log", **query):
        out.write(chunk)
        out.flush()


@click.command(epilog=examples("nodeagent events", "nodeagent events -o json"))
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]))
@with_agent
def events(output: str | None, socket_option: str | None) -> None:
    """List events (kubectl events): LAST SEEN TYPE REASON OBJECT MESSAGE."""
    items = client(socket_option).events()
    if output:
        print_data({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": ""}, "items": items},
                   output)
        return
    if not items:
        click.echo("No events found", err=True)
        return
    moment = now()
    rows = [[age(e.get("lastTimestamp"), moment), e.get("type", ""), e.get("reason", ""),
             f"{e['involvedObject'].get('kind', '').lower()}/{e['involvedObject'].get('name', '')}",
             e.get("message", "") + (f" (x{e['count']})" if e.get("count", 1) > 1 else "")] for e in items]
    click.echo(table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows))


@click.group(epilog=examples("nodeagent top pods"))
def top() -> None:
    """CPU and memory use, from the cgroups (kubectl top)."""


@top.command("pods", epilog=examples("nodeagent top pods", "nodeagent top pods -o json"))
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]))
@with_agent
def top_pods(output: str | None, socket_option: str | None) -> None:
    """NAME CPU(cores) MEMORY(bytes) per pod."""
    metrics = client(socket_option).get("/apis/metrics.k8s.io/v1beta1/pods")
    if output:
        print_data(metrics, output)
        return
    rows = []
    for item in metrics["items"]:
        cpu = sum(int(c["usage"]["cpu"].rstrip("n")) for c in item["containers"])
        memory = sum(int(c["usage"]["memory"].rstrip("Ki")) for c in item["containers"])
        rows.append([item["metadata"]["name"], f"{cpu // 1_000_000}m", f"{memory // 1024}Mi"])
    click.echo(table(["NAME", "CPU(cores)", "MEMORY(bytes)"], rows) if rows else "No pods running")
