"""Printing for the CLI: JSON and YAML as machines read them, tables as kubectl draws them."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click


def examples(*lines: str) -> str:
    """A command's help epilog: its examples, one a line, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def print_data(data: object, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml  # only -o yaml pays for it: every CLI start counts

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def fail(message: str) -> None:
    """One line on stderr, exit 1."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)
