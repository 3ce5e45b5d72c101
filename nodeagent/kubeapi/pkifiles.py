"""Where the API's PKI lives, and the TLS context made from it: all a start needs once the files exist.

Apart from kubeapi/tls.py, which makes the files with `cryptography`: its import (~40 ms, more on a busy
machine) is paid only by the start that makes them, not by every restart.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PkiFiles:
    directory: str

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.directory, "ca.crt")

    @property
    def ca_key(self) -> str:
        return os.path.join(self.directory, "ca.key")

    @property
    def server_cert(self) -> str:
        return os.path.join(self.directory, "apiserver.crt")

    @property
    def server_key(self) -> str:
        return os.path.join(self.directory, "apiserver.key")

    def complete(self) -> bool:
        return all(os.path.exists(path) for path in (self.ca_cert, self.ca_key, self.server_cert, self.server_key))

    def server_context(self) -> ssl.SSLContext:
        """TLS for the listener: our serving certificate; a client certificate is asked for, checked against
        the CA when sent, and optional (bearer tokens are the other way in)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca_cert)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
