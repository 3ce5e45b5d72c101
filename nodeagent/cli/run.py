"""`nodeagent run`: the daemon in the foreground, as systemd runs it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import ClassVar

import click

from nodeagent.cli.output import fail


class _JournalFormatter(logging.Formatter):
    """One line per record; with `<N>` syslog priority prefixes when stderr goes to the journal."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
    }

    def __init__(self, journal: bool) -> None:
        super().__init__("%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\n", " | ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{line}" if self.journal else line


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "watchdog", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A KubeletConfiguration file (default: the embedded defaults).")
def run(config_path: str | None) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (pods keep running)."""
    from nodeagent.agent.app import Agent, StartError, preflight, require_root
    from nodeagent.config import load_config
    from nodeagent.errors import NodeAgentError

    try:
        require_root()
        config, warnings = load_config(config_path)
    except NodeAgentError as exc:
        fail(str(exc))
    setup_logging(config.nodeagent.log_level)
    log = logging.getLogger("nodeagent")
    for warning in warnings:
        log.warning("configuration %s: %s", config_path or "<defaults>", warning)
    try:
        preflight(config)
        agent = Agent(config, config_path)
        asyncio.run(agent.run())
    except StartError as exc:
        fail(str(exc))
    except NodeAgentError as exc:
        fail(f"nodeagent stopped: {exc}")
