"""`nodeagent run`: the daemon in the foreground, as systemd runs it (nodeagent.daemon does the work)."""

from __future__ import annotations

import gc

import click

from nodeagent.cli.output import examples


@click.command(epilog=examples("nodeagent run", "nodeagent run --config /etc/nodeagent/nodeagent.yaml",
                                 "NODEAGENT_CONFIG=./nodeagent.yaml nodeagent run"))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG",
              help="A KubeletConfiguration file (default: $NODEAGENT_CONFIG, else the embedded defaults).")
def run(config_path: str | None) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (pods keep running)."""
    # The agent's modules make many objects and free almost none: no collections while they load
    # (nodeagent.daemon enables them again, once what the start built is frozen).
    gc.disable()
    from nodeagent.daemon import run_daemon  # the agent loads only when `run` runs: other commands start faster

    raise SystemExit(run_daemon(config_path))
