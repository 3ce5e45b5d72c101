"""The `nodeagent` command: the daemon and a kubectl-like client, one click group.

Exit codes: 0 success, 1 a failure reported in one line (bad manifest, no agent, not found),
2 a usage error (click's).
"""

from __future__ import annotations

import importlib

import click

from nodeagent.cli.output import examples

# Each command's module, loaded only when the command runs (or help lists them): `nodeagent run` and
# `nodeagent get pods` do not load the others (exec's aiohttp client, the image store, ...), ~30 ms of each start.
COMMANDS = {
    "run": "nodeagent.cli.run:run", "get": "nodeagent.cli.commands:get", "describe": "nodeagent.cli.commands:describe",
    "logs": "nodeagent.cli.commands:logs", "events": "nodeagent.cli.commands:events",
    "top": "nodeagent.cli.commands:top", "exec": "nodeagent.cli.streams:exec_command",
    "attach": "nodeagent.cli.streams:attach", "port-forward": "nodeagent.cli.streams:port_forward",
    "plan": "nodeagent.cli.plan:plan", "doctor": "nodeagent.cli.doctor:doctor", "images": "nodeagent.cli.images:images",
    "kubeconfig": "nodeagent.cli.kubeconfig:kubeconfig",
}


class LazyGroup(click.Group):
    """The top-level group: its commands are COMMANDS, each imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, where
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=examples(
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


def main() -> None:
    cli(prog_name="nodeagent")
