"""The `nodeagent` command: the daemon and a kubectl-like client, one click group.

Exit codes: 0 success, 1 a failure reported in one line (bad manifest, no agent, not found),
2 a usage error (click's).
"""

from __future__ import annotations

import click

from nodeagent.cli.plan import plan


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nodeagent")
def cli() -> None:
    """nodeagent: the kubelet's job for static pods, without a control plane."""


cli.add_command(plan)


def main() -> None:
    cli(prog_name="nodeagent")
