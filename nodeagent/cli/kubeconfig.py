"""`nodeagent kubeconfig`: a kubeconfig for kubectl and other Kubernetes clients of this agent."""

from __future__ import annotations

import click

from nodeagent.cli.output import examples, fail


@click.command(epilog=examples(
    "sudo nodeagent kubeconfig > ~/.kube/nodeagent && kubectl --kubeconfig ~/.kube/nodeagent get pods -A",
    "sudo nodeagent kubeconfig --user alice --read-only > alice.kubeconfig"))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG",
              help="The agent's configuration file (default /etc/nodeagent/nodeagent.yaml).")
@click.option("--user", help="Mint a new token for this user (else: the first full-access token).")
@click.option("--read-only", is_flag=True, help="With --user: the token may get, list, watch and read logs only.")
def kubeconfig(config_path: str | None, user: str | None, read_only: bool) -> None:
    """Print a kubeconfig for this agent's Kubernetes API (server, CA, token)."""
    import yaml

    from nodeagent.config import load_config
    from nodeagent.defaults import existing_config
    from nodeagent.errors import ConfigError
    from nodeagent.kubeapi.kubeconfig import KubeconfigError
    from nodeagent.kubeapi.kubeconfig import kubeconfig as make
    from nodeagent.kubeapi.listener import api_settings

    if read_only and user is None:
        raise click.UsageError("--read-only needs --user NAME (a new token is minted for it)")
    path = existing_config(config_path)
    try:
        config, _ = load_config(path)
        click.echo(yaml.safe_dump(make(api_settings(config), user=user, read_only=read_only), sort_keys=False),
                   nl=False)
    except (ConfigError, KubeconfigError) as exc:
        fail(str(exc))
