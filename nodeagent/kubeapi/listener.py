"""The HTTPS listener's setup: PKI and token file made on first start, the TLS context, the authenticator."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass

from nodeagent.config import KubeletConfig
from nodeagent.kubeapi.auth import Authenticator, ensure_token_file
from nodeagent.kubeapi.pkifiles import PkiFiles


@dataclass(frozen=True, slots=True)
class ApiSettings:
    bind_address: str  # HOST:PORT; "" means no HTTPS listener
    pki_dir: str
    token_file: str
    full_access_groups: tuple[str, ...]
    read_only_groups: tuple[str, ...]
    node_name: str

    @property
    def host(self) -> str:
        return self.bind_address.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.bind_address.rpartition(":")[2])

    def authenticator(self) -> Authenticator:
        return Authenticator(self.token_file, list(self.full_access_groups), list(self.read_only_groups))

    def prepare(self) -> ssl.SSLContext:
        """The CA, serving certificate and token file (made when missing; blocking: call in a thread).
        The missing files are made by a child process: `cryptography` in the agent cost 40 ms of its start and,
        once loaded, ~11 MB of its memory for good (its Rust library alone 9 MB resident)."""
        pki = PkiFiles(self.pki_dir)
        if not pki.complete():
            hosts = sorted({"localhost", "127.0.0.1", "::1", self.node_name, socket.gethostname()}
                           | ({self.host} if self.host not in ("0.0.0.0", "::") else set()))
            made = subprocess.run([sys.executable, "-m", "nodeagent.kubeapi.tls", self.pki_dir, *hosts],
                                  capture_output=True, text=True, check=False)
            if made.returncode != 0:
                lines = made.stderr.strip().splitlines() or [f"exit code {made.returncode}"]
                raise OSError(f"making the PKI in {self.pki_dir}: {lines[-1]}")
        ensure_token_file(self.token_file)
        return pki.server_context()


def client_host(host: str) -> str:
    """Where a client on this machine reaches a listener bound to `host`."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def api_settings(config: KubeletConfig) -> ApiSettings:
    agent = config.nodeagent
    return ApiSettings(bind_address=agent.api_bind_address, pki_dir=agent.api_pki_dir,
                       token_file=agent.api_tokens_path, full_access_groups=tuple(agent.api_full_access_groups),
                       read_only_groups=tuple(agent.api_read_only_groups), node_name=config.node_name)
