"""`nodeagent images` and `nodeagent images prune`, reading the store of the configured stateDir directly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.cli.images import human_size, images
from nodeagent.images.store import ImageStore, PullPolicy
from tests.integration.images import Entry, busybox_layer, gzip_layer, push_image
from tests.integration.registry import Registry, registry  # noqa: F401


@pytest.mark.parametrize(("size", "shown"), [(0, "0B"), (999, "999B"), (1000, "1kB"), (1983063, "1.98MB"),
                                             (772_100, "772kB"), (12_500_000_000, "12.5GB")])
def test_human_size_as_crictl(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_images_and_prune_without_the_agent(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    state = tmp_path / "state"
    config = tmp_path / "nodeagent.yaml"
    config.write_text(f"nodeagent:\n  stateDir: {state}\n")
    kept = push_image(registry, "cli/kept", "1.0", [busybox_layer()])
    gone = push_image(registry, "cli/gone", "2.0", [busybox_layer(), gzip_layer([Entry("only-here", data=b"x" * 5000)])])

    async def pull() -> None:
        async with ImageStore(str(state / "images"), insecure_registries=[registry.host]) as store:
            await store.ensure(kept.reference, PullPolicy.IF_NOT_PRESENT, holder="container-1")
            await store.ensure(gone.by_digest, PullPolicy.IF_NOT_PRESENT)

    asyncio.run(pull())
    runner = CliRunner()
    listed = runner.invoke(images, ["--config", str(config)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "SIZE"]
    rows = sorted(line.split() for line in lines[1:])
    assert rows[0][:3] == [f"{registry.host}/cli/gone", "<none>", gone.digest[7:20]]
    assert rows[1][:3] == [f"{registry.host}/cli/kept", "1.0", kept.digest[7:20]]
    assert rows[1][3].endswith("MB")
    as_json = json.loads(runner.invoke(images, ["--config", str(config), "-o", "json"]).output)
    assert {image["reference"] for image in as_json["images"]} == {kept.reference, gone.by_digest}
    pruned = runner.invoke(images, ["prune", "--config", str(config)])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output.splitlines()[0] == f"Deleted: {gone.by_digest}"
    assert pruned.output.splitlines()[-1].startswith("Total reclaimed space: ")
    after = runner.invoke(images, ["--config", str(config)]).output.splitlines()
    assert [line.split()[0] for line in after[1:]] == [f"{registry.host}/cli/kept"]  # leased: kept


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("nodeagent: [")
    result = CliRunner().invoke(images, ["--config", str(config)])
    assert result.exit_code == 1 and result.output.startswith(f"error: {config}: invalid YAML")
