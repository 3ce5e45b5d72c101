"""The `nodeagent` command: the daemon and a kubectl-like client, one click group.

Exit codes: 0 success, 1 a failure reported in one line (bad manifest, no agent, not found),
2 a usage error (click's).
"""

from __future__ import annotations

import click

from nodeagent.cli.commands import describe, events, get, logs, top
from nodeagent.cli.doctor import doctor
from nodeagent.cli.images import images
from nodeagent.cli.kubeconfig import kubeconfig
from nodeagent.cli.output import examples
from nodeagent.cli.plan import plan
from nodeagent.cli.run import run
from nodeagent.cli.streams import attach, exec_command, port_forward


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=examples(
    "sudo nodeagent run",
    "sudo cp examples/memory-demo-2.yaml /etc/kubernetes/manifests/",
    "nodeagent get pods",
    "nodeagent describe pod memory-demo-2",
    "nodeagent plan examples/memory-demo.yaml",
) + "\n\n\b\nShell completion, in ~/.bashrc (zsh: zsh_source, fish: fish_source):\n"
  '  eval "$(_NODEAGENT_COMPLETE=bash_source nodeagent)"')
@click.version_option(package_name="nodeagent")
def cli() -> None:
    """nodeagent: the kubelet's job for static pods, without a control plane."""


for command in (run, get, describe, logs, events, top, exec_command, attach, port_forward, plan, doctor, images,
                kubeconfig):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="nodeagent")
