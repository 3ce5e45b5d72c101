"""`nodeagent run` behind the CLI: logging for the journal, the checks, then the agent until a signal.

Errors that stop the start are logged at error priority (so `journalctl -p err -u nodeagent` shows
them) and end the process with exit code 1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import ClassVar

from nodeagent.agent.app import Agent
from nodeagent.agent.factories import StartError, make_node_parts, preflight, require_root
from nodeagent.config import load_config
from nodeagent.errors import NodeAgentError

log = logging.getLogger("nodeagent")

# The cyclic collector waits while the agent starts (`nodeagent run` disabled it). The modules, the
# configuration and the agent live as long as the process: frozen, no collection walks them again (a full
# collection over them, pydantic's schemas most, takes ~20 ms). What the restore builds for each pod lives
# on too, and collecting while 1,000 pods are restored took ~70 ms of their restart for nothing.
COLLECTIONS_PAUSED_SECONDS = 10.0


class JournalFormatter(logging.Formatter):
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
    handler.setFormatter(JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


def run_daemon(config_path: str | None) -> int:
    """The exit code: 0 after a clean stop, 1 when the agent could not start or failed."""
    setup_logging("INFO")
    try:
        require_root()
        config, warnings = load_config(config_path)
        setup_logging(config.nodeagent.log_level)
        for warning in warnings:
            log.warning("configuration %s: %s", config_path or "<defaults>", warning)
        preflight(config)
        agent = Agent(config, make_node_parts(config), config_path)
        gc.freeze()
        asyncio.run(_main(agent))
    except StartError as exc:
        log.error("%s", exc)
        return 1
    except NodeAgentError as exc:
        log.error("nodeagent stopped: %s", exc)
        return 1
    return 0


async def _main(agent: Agent) -> None:
    if sys.version_info < (3, 12):
        # 3.11 waits for each child in a thread of its own; a pidfd is cheaper (3.12 does this itself).
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    collect_from_ready(agent)
    if path := os.environ.get("NODEAGENT_PROFILE"):
        profile_on_sigusr1(path)
    await agent.run()


def collect_from_ready(agent: Agent) -> None:
    """Collections resume at READY, or after COLLECTIONS_PAUSED_SECONDS if the start takes longer (a slow
    first sync): never paused for long."""
    agent.on_ready = gc.enable
    asyncio.get_running_loop().call_later(COLLECTIONS_PAUSED_SECONDS, gc.enable)


def profile_on_sigusr1(path: str) -> None:
    """NODEAGENT_PROFILE=<file> (development): SIGUSR1 starts cProfile on the event loop's thread, the next
    SIGUSR1 stops it and writes <file> for pstats: what a running agent spends its loop on (threads apart).
    The write, once per profile, is the only blocking step."""
    import cProfile

    profiler = cProfile.Profile()
    running = False

    def toggle() -> None:
        nonlocal running
        if running:
            profiler.disable()
            profiler.dump_stats(path)
            log.info("profile written to %s", path)
        else:
            profiler.enable()
            log.info("profiling until the next SIGUSR1")
        running = not running

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle)
