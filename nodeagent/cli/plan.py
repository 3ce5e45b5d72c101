"""`nodeagent plan MANIFEST`: the cgroup files and values the kubelet would give each pod of a manifest."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING

import click

from nodeagent.cli.output import examples, fail, print_data

if TYPE_CHECKING:  # the model and planner load only when `plan` runs: other commands start faster
    from nodeagent.api.manifest import ManifestResult
    from nodeagent.config import KubeletConfig
    from nodeagent.plan.pod import ResourcePlan
    from nodeagent.plan.settings import NodeInfo, PlanSettings


@click.command(epilog=examples(
    "nodeagent plan examples/memory-demo-2.yaml",
    "nodeagent plan examples/qos-guaranteed.yaml --cgroup-version 2 --cgroup-driver systemd -o yaml",
    "nodeagent plan - < pod.yaml"))
@click.argument("manifest", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take settings from this file.")
@click.option("--cgroup-version", type=click.Choice(["1", "2"]), help="Default: this machine's.")
@click.option("--cgroup-driver", type=click.Choice(["cgroupfs", "systemd"]), help="Default: configured, else detected.")
@click.option("--cgroup-root", help='Default: the configured cgroupRoot ("/").')
@click.option("--node-cpu", help="Node CPUs as a quantity (2, 1500m). Default: this machine's.")
@click.option("--node-memory", help="Node memory as a quantity (16Gi). Default: this machine's.")
@click.option("--node-swap", help="Node swap as a quantity. Default: this machine's.")
@click.option("--node-hugepages", help="Node hugepages as SIZE=TOTAL,... (2Mi=1Gi,1Gi=0), planned as if the hugetlb "
                                       "controller were there; \"\" for none. Default: this machine's.")
@click.option("--swap-behavior", type=click.Choice(["NoSwap", "LimitedSwap"]), help="Default: configured.")
@click.option("--node-name", help="Default: configured, else the lower-cased hostname.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
def plan(
    manifest: str, config_path: str | None, cgroup_version: str | None, cgroup_driver: str | None,
    cgroup_root: str | None, node_cpu: str | None, node_memory: str | None, node_swap: str | None,
    node_hugepages: str | None, swap_behavior: str | None, node_name: str | None, output: str,
) -> None:
    """Show the cgroups, files and values (and oom_score_adj) the kubelet would give MANIFEST's pods."""
    from nodeagent.config import load_config
    from nodeagent.errors import ConfigError
    from nodeagent.plan.pod import plan_pod

    try:
        config, _ = load_config(config_path)
        settings = _settings(config, cgroup_version, cgroup_driver, cgroup_root, swap_behavior)
    except ConfigError as exc:
        fail(str(exc))
    node = _node(config, node_cpu, node_memory, node_swap, node_hugepages)
    result = _load(manifest, node_name or config.node_name)
    for warning in result.warnings:
        click.echo(f"warning: {_label(manifest)}: {warning}", err=True)
    if not result.ok:
        for problem in result.problems:
            click.echo(f"error: {_label(manifest)}: {problem}", err=True)
        raise SystemExit(1)
    plans = [plan_pod(pod, node, settings) for pod in result.pods]
    if output == "table":
        click.echo("\n\n".join(render_plan(p) for p in plans))
    else:
        data = [p.to_json() for p in plans]
        print_data(data[0] if len(data) == 1 else data, output)


def _settings(config: KubeletConfig, version: str | None, driver: str | None, root: str | None,
              swap: str | None) -> PlanSettings:
    from nodeagent.cgroups.detect import choose_driver, detect_layout
    from nodeagent.plan.settings import CgroupDriverName, SwapBehavior

    chosen_driver = driver or choose_driver(config.cgroup_driver)[0]
    settings = config.plan_settings(
        cgroup_version=int(version) if version else detect_layout().version,
        cgroup_driver=CgroupDriverName(chosen_driver),
    )
    if root is not None:
        if not root.startswith("/"):
            fail(f'--cgroup-root "{root}": must be an absolute cgroup path')
        settings = dataclasses.replace(settings, cgroup_root=root)
    if swap is not None:
        settings = dataclasses.replace(settings, swap_behavior=SwapBehavior(swap))
    return settings


def _node(config: KubeletConfig, cpu: str | None, memory: str | None, swap: str | None,
          hugepages: str | None) -> NodeInfo:
    from nodeagent.api.quantity import parse_quantity
    from nodeagent.errors import QuantityError
    from nodeagent.node import node_info, read_node_info

    here = read_node_info(config)
    try:
        sized = node_info(
            parse_quantity(cpu).milli_value() if cpu else here.cpu_millis,
            parse_quantity(memory).value() if memory else here.memory_bytes,
            parse_quantity(swap).value() if swap else here.swap_bytes,
            config,
        )
        if hugepages is None:
            return dataclasses.replace(sized, hugepages=here.hugepages, hugetlb_controller=here.hugetlb_controller)
        pages = []
        for item in filter(None, hugepages.split(",")):
            size, _, total = item.partition("=")
            pages.append((parse_quantity(size.strip()).value(), parse_quantity(total.strip() or "0").value()))
        return dataclasses.replace(sized, hugepages=tuple(sorted(pages)), hugetlb_controller=True)
    except QuantityError as exc:
        fail(f"node size: {exc}")
        raise  # unreachable: fail() exits


def _load(manifest: str, node_name: str) -> ManifestResult:
    from nodeagent.api.manifest import load_manifest

    try:
        if manifest == "-":
            content = sys.stdin.buffer.read()
        else:
            with open(manifest, "rb") as handle:
                content = handle.read()
    except OSError as exc:
        fail(f"{manifest}: {exc.strerror}")
    origin = "-" if manifest == "-" else os.path.abspath(manifest)
    return load_manifest(content, origin=origin, source="file", node_name=node_name)


def _label(manifest: str) -> str:
    return "<stdin>" if manifest == "-" else manifest


def render_plan(plan: ResourcePlan) -> str:
    """A readable block per cgroup: where it is, then each file and its value."""
    lines = [
        f"Pod:      {plan.namespace}/{plan.name}",
        f"UID:      {plan.uid}",
        f"QoS:      {plan.qos.value}",
        f"Cgroups:  v{plan.cgroup_version}, {plan.cgroup_driver.value} driver",
    ]
    cgroups = ([plan.pod] if plan.pod else []) + list(plan.containers)
    for cgroup in cgroups:
        title = "pod" if cgroup.level == "pod" else f"container {cgroup.container}"
        lines += ["", f"{title}: {cgroup.path}"]
        rows = list(cgroup.files.items())
        if cgroup.oom_score_adj is not None:
            rows.append(("oom_score_adj", str(cgroup.oom_score_adj)))
        width = max((len(name) for name, _ in rows), default=0)
        lines += [f"  {name.ljust(width)}  {value}" for name, value in rows] or ["  (no limits)"]
    return "\n".join(lines)
