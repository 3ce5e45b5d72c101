"""`nodeagent images`, `images pull`, `images load` and `images prune`: the image store, opened directly at the
configured `<stateDir>/images`, so they work with the agent stopped (a running agent is safe: the store is
locked, shared by pulls and loads, exclusively by prune). An image pulled or loaded ahead of time is what
a pod with `imagePullPolicy: IfNotPresent` or `Never` then runs, with no registry (air-gapped nodes).

prune keeps, as the kubelet's image garbage collection does, every image a container uses: a running
container holds a lease on its image; and when an agent answers on its socket, the image of every
container of its pods (one in back-off, or exited and kept, included) is kept too.

Exit codes: 0 success, 1 a failure reported in one line (unreadable configuration or store).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from nodeagent.cli.output import examples, fail, print_data, table
from nodeagent.defaults import CONFIG_PATH, existing_config

if TYPE_CHECKING:  # the store's modules load only when an images command runs
    from nodeagent.config import NodeAgentConfig
    from nodeagent.images.progress import Transferred
    from nodeagent.images.store import ImageStore

_CONFIG_HELP = ("The agent's configuration, for its stateDir (default: $NODEAGENT_CONFIG, else "
                f"{CONFIG_PATH} when it exists, else the embedded defaults).")


def human_size(size_bytes: int) -> str:
    """Decimal units with three significant digits, as crictl (go-units HumanSize) prints them: 1.98MB."""
    size, units = float(size_bytes), ("B", "kB", "MB", "GB", "TB", "PB")
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    return f"{size:.3g}{units[index]}"


def _settings(config_path: str | None) -> NodeAgentConfig:
    """The `nodeagent:` settings of the configuration: its stateDir, socket and registry settings."""
    from nodeagent.config import load_config
    from nodeagent.errors import ConfigError

    try:
        config, _ = load_config(existing_config(config_path))
    except ConfigError as exc:
        fail(str(exc))
    return config.nodeagent


def _store(settings: NodeAgentConfig) -> ImageStore:
    from nodeagent.images.store import ImageStore

    return ImageStore(os.path.join(settings.state_dir, "images"), registry_auth_file=settings.registry_auth_file,
                      insecure_registries=settings.insecure_registries, unpack_limits=settings.unpack_limits())


def _progress(quiet: bool) -> Callable[[Transferred], None] | None:
    """A one-line progress report on standard error when it is a terminal; None in scripts."""
    if quiet or not sys.stderr.isatty():
        return None

    def report(now: Transferred) -> None:
        click.echo(f"\r{now.layers_done}/{now.layers} layers, {human_size(now.bytes_done)}/"
                   f"{human_size(now.bytes_total)}\x1b[K", nl=False, err=True)
    return report


@click.group(invoke_without_command=True, epilog=examples("nodeagent images", "nodeagent images -o json"))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG", help=_CONFIG_HELP)
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), help="Default: a table.")
@click.pass_context
def images(context: click.Context, config_path: str | None, output: str | None) -> None:
    """List the images in the store: REPOSITORY TAG DIGEST SIZE, as crictl images."""
    if context.invoked_subcommand is not None:
        context.obj = config_path
        return
    import asyncio  # here, as the store's modules: every other command starts faster without them

    from nodeagent.images.errors import ImageError
    from nodeagent.timeformat import rfc3339

    try:
        found = asyncio.run(_store(_settings(config_path)).list_images())
    except (ImageError, OSError) as exc:
        fail(f"reading the image store: {exc}")
    if output:
        print_data({"images": [{"reference": image.reference, "repository": image.repository, "tag": image.tag,
                                "digest": image.digest, "imageID": image.image_id, "size": image.size_bytes,
                                "lastUsed": rfc3339(image.last_used)} for image in found]},
                   output)
        return
    rows = [[image.repository, image.tag or "<none>", image.digest.removeprefix("sha256:")[:13],
             human_size(image.size_bytes)] for image in found]
    click.echo(table(["REPOSITORY", "TAG", "DIGEST", "SIZE"], rows))


def images_of_pods(socket: str) -> set[str] | None:
    """The digests of the images the agent's pods' containers run (status imageID), or None when no agent
    answers."""
    from nodeagent.cli.client import AgentClient
    from nodeagent.errors import NodeAgentError

    try:
        pods = AgentClient(socket).pods()
    except NodeAgentError:
        return None
    found = set()
    for pod in pods:
        status = pod.get("status", {})
        for container in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
            image_id = str(container.get("imageID") or "")
            if "@" in image_id:
                found.add(image_id.rpartition("@")[2])
    return found


@images.command(epilog=examples("nodeagent images prune", "nodeagent images prune -o json"))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG", help=_CONFIG_HELP)
@click.option("--socket", "socket_option", envvar="NODEAGENT_SOCKET",
              help="The agent's socket, to keep the images of its pods (default: $NODEAGENT_SOCKET, else the "
                   "configured nodeagent.socket).")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), help="Default: one line per image.")
@click.pass_context
def prune(context: click.Context, config_path: str | None, socket_option: str | None, output: str | None) -> None:
    """Remove the images no container uses, and the blobs and layers only they used."""
    import asyncio  # here, as the store's modules: every other command starts faster without them

    from nodeagent.images.errors import ImageError

    settings = _settings(config_path or context.obj)
    in_use = images_of_pods(socket_option or settings.socket)
    try:
        result = asyncio.run(_store(settings).prune(in_use or ()))
    except (ImageError, OSError) as exc:
        fail(f"pruning the image store: {exc}")
    if output:
        print_data({"deleted": list(result.removed), "reclaimedBytes": result.freed_bytes,
                    "agentAnswered": in_use is not None}, output)
        return
    for reference in result.removed:
        click.echo(f"Deleted: {reference}")
    note = "" if in_use is not None else " (no agent answered: only the images of running containers were kept)"
    click.echo(f"Total reclaimed space: {human_size(result.freed_bytes)}{note}")


_QUIET_HELP = "Print nothing but errors (no progress, no result line)."


@images.command(epilog=examples("nodeagent images pull docker.io/library/busybox:1.36",
                                "nodeagent images pull -q registry.local:5000/app@sha256:... && echo ready"))
@click.argument("image")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG", help=_CONFIG_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.pass_context
def pull(context: click.Context, image: str, config_path: str | None, quiet: bool) -> None:
    """Pull IMAGE into the store ahead of time, with the agent's registry settings (registryAuthFile,
    insecureRegistries); progress (layers and bytes) on a terminal."""
    import asyncio  # here, as the store's modules: every other command starts faster without them

    from nodeagent.images.errors import ImageError
    from nodeagent.images.store import PullPolicy

    store = _store(_settings(config_path or context.obj))
    progress = _progress(quiet)
    try:
        pulled = asyncio.run(store.ensure(image, PullPolicy.ALWAYS, progress=progress))
    except (ImageError, OSError) as exc:
        fail(f"pulling {image}: {exc}")
    finally:
        if progress is not None:
            click.echo(err=True)
    if not quiet:
        click.echo(f"{pulled.reference}: {pulled.digest}")


@images.command(epilog=examples("nodeagent images load busybox.tar",
                                "docker save busybox:1.36 | nodeagent images load -",
                                "nodeagent images load ./layout   # an OCI image layout directory"))
@click.argument("source", metavar="FILE|-")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="NODEAGENT_CONFIG", help=_CONFIG_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.pass_context
def load(context: click.Context, source: str, config_path: str | None, quiet: bool) -> None:
    """Import the images of a `docker save` archive, an OCI image layout directory or an `oci-archive` tar
    (FILE, or - for standard input, possibly gzipped), as `ctr images import` and `podman load` do. Every
    digest is verified before anything is added: a corrupt archive adds nothing."""
    import asyncio  # here, as the store's modules: every other command starts faster without them

    from nodeagent.images.errors import ImageError

    store = _store(_settings(config_path or context.obj))
    progress = _progress(quiet)
    try:
        loaded = asyncio.run(store.load(source, progress))
    except (ImageError, OSError) as exc:
        fail(f"loading {'standard input' if source == '-' else source}: {exc}")
    finally:
        if progress is not None:
            click.echo(err=True)
    if not quiet:
        for image in loaded:
            click.echo(f"Loaded image: {image.reference} ({image.digest})")
