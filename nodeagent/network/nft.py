"""Run nft (Debian package nftables) with JSON, in the node's network namespace.

One `nft -j -f -` call per change: nft applies a file as one transaction, so a pod's rules appear or
vanish together and a failed change leaves the table as it was. In another namespace than the
agent's, nft runs under `nsenter --net=<path>` (util-linux).

pyroute2's nftables module is not used: it is a prototype (its own docstring says so) without NAT
expressions, rule comments or transactions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Sequence

from nodeagent.network.errors import NftablesError
from nodeagent.network.nftrules import FAMILY, TABLE, Command, ListedRule, parse_listing

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
NO_TABLE = "No such file or directory"  # nft's words (LC_ALL=C) for listing a table that does not exist


class Nft:
    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    async def list_rules(self) -> list[ListedRule] | None:
        """The rules of table ip nodeagent; None when the table does not exist."""
        code, out, err = await self._run(["-j", "list", "table", FAMILY, TABLE], None)
        if code != 0:
            if NO_TABLE in err:
                return None
            raise NftablesError(f"listing table {FAMILY} {TABLE}", err.strip() or f"exit code {code}")
        try:
            return parse_listing(json.loads(out))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NftablesError(f"listing table {FAMILY} {TABLE}", f"unexpected output: {exc}") from exc

    async def apply(self, commands: Sequence[Command], *, what: str) -> None:
        """Apply the commands as one transaction."""
        if not commands:
            return
        document = json.dumps({"nftables": list(commands)}).encode()
        log.debug("nft: %s: %s", what, document.decode())
        code, _, err = await self._run(["-j", "-f", "-"], document)
        if code != 0:
            raise NftablesError(what, err.strip() or f"exit code {code}")

    async def _run(self, arguments: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if nft is None:
            raise NftablesError("running nft", "nft is not installed (Debian package nftables)")
        argv = [nft, *arguments]
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns}", "--", *argv]
        environment = {**os.environ, "LC_ALL": "C"}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=environment)
        except OSError as exc:
            raise NftablesError(f"running {argv[0]}", exc.strerror or str(exc)) from exc
        try:
            async with asyncio.timeout(TIMEOUT_S):
                out, err = await process.communicate(stdin)
        except TimeoutError as exc:
            raise NftablesError(" ".join(argv), f"no answer within {TIMEOUT_S:.0f} s") from exc
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode is not None  # communicate() returned: the process ended
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
