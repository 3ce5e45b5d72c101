"""`nodeagent doctor`: whether this node can run the agent as configured, one line per check.

Exit codes: 0 when no check fails (warnings allowed), 1 when one does.
"""

from __future__ import annotations

import json

import click

from nodeagent.cli.output import examples
from nodeagent.defaults import CONFIG_PATH, existing_config


@click.command(epilog=examples("nodeagent doctor", "nodeagent doctor --config /etc/nodeagent/nodeagent.yaml -o json"))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG",
              help="The configuration to check against (default: $NODEAGENT_CONFIG, else "
                   f"{CONFIG_PATH} when it exists, else the embedded defaults).")
@click.option("-o", "--output", type=click.Choice(["json"]), help="Default: one line per check.")
def doctor(config_path: str | None, output: str | None) -> None:
    """Check this node: root, cgroups, driver, swap, manifests, runtime, socket, ip_forward, stateDir."""
    from nodeagent.doctor import check_config, render_check, run_checks

    config, config_check = check_config(existing_config(config_path))
    checks = [config_check, *run_checks(config)]
    statuses = {check.status for check in checks}
    worst = next(status for status in ("fail", "warn", "ok") if status in statuses)
    if output == "json":
        click.echo(json.dumps({"status": worst, "checks": [check.to_json() for check in checks]}, indent=2))
    else:
        click.echo("\n".join(render_check(check) for check in checks))
    if worst == "fail":
        raise SystemExit(1)
