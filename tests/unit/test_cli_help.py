"""Every command's --help ends with examples; the top level also says how to turn on shell completion."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from nodeagent.cli.main import cli


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            found.extend(commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", commands(), ids=lambda path: " ".join(path) or "nodeagent")
def test_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="nodeagent")
    assert result.exit_code == 0, result.output
    examples = result.output.split("Examples:\n", 1)[1]
    first = examples.splitlines()[0].strip()
    assert first.startswith(("nodeagent ", "sudo nodeagent ")), first
    assert " ".join(("nodeagent", *path)) in examples or not path


def test_top_level_help_documents_shell_completion() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="nodeagent")
    assert 'eval "$(_NODEAGENT_COMPLETE=bash_source nodeagent)"' in result.output


def test_completion_script_is_what_the_help_says() -> None:
    result = CliRunner().invoke(cli, [], prog_name="nodeagent", env={"_NODEAGENT_COMPLETE": "bash_source"},
                                complete_var="_NODEAGENT_COMPLETE")
    assert "_nodeagent_completion()" in result.output


def test_a_command_loads_only_its_own_module() -> None:
    """`nodeagent get pods` (and `run`) skip the other commands' imports: exec's aiohttp client, the image store."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom nodeagent.cli.main import cli\n"
            "assert CliRunner().invoke(cli, ['get', 'pods', '--help']).exit_code == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith(('nodeagent.cli.', 'aiohttp', 'nodeagent.images'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "nodeagent.cli.commands" in loaded
    for other in ("nodeagent.cli.streams", "nodeagent.cli.images", "nodeagent.cli.run", "aiohttp", "nodeagent.images"):
        assert f"'{other}" not in loaded, loaded
