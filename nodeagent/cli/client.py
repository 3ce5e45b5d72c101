"""Talking to the agent: HTTP over its Unix socket, with the standard library only (so the CLI starts fast).

The socket: --socket, else $NODEAGENT_SOCKET, else `nodeagent.socket` of the configuration file
(/etc/nodeagent/nodeagent.yaml, or $NODEAGENT_CONFIG), else /run/nodeagent/nodeagent.sock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from nodeagent.defaults import CONFIG_PATH, SOCKET_PATH
from nodeagent.errors import AgentUnavailableError, NodeAgentError

TIMEOUT_SECONDS = 30.0
RETRY_DELAYS = (0.05, 0.3)  # seconds before the second and the third try of a GET closed unanswered


class ApiError(NodeAgentError):
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def socket_path(option: str | None) -> str:
    if option:
        return option
    if os.environ.get("NODEAGENT_SOCKET"):
        return os.environ["NODEAGENT_SOCKET"]
    config = os.environ.get("NODEAGENT_CONFIG", CONFIG_PATH)
    try:
        import yaml

        with open(config) as handle:
            data = yaml.load(handle, Loader=yaml.CSafeLoader)
        configured = data.get("nodeagent", {}).get("socket") if isinstance(data, dict) else None
        if isinstance(configured, str) and configured:
            return configured
    except (OSError, ValueError, AttributeError):
        pass
    return SOCKET_PATH


class _ClosedUnanswered(Exception):
    """The connection was closed or reset before any byte of the answer came."""


class AgentClient:
    """GET requests over the agent's Unix socket.

    HTTP/1.0 by hand, a few lines: http.client would add 40 ms (its email parser) to every CLI start,
    a quarter of the time `get pods` is allowed. HTTP/1.0 needs no chunking: the agent closes the
    connection at the end of the body.
    """

    def __init__(self, path: str, *, timeout: float | None = TIMEOUT_SECONDS) -> None:
        self.path = path
        self.timeout = timeout

    def _open(self, url: str) -> tuple[int, socket.socket, bytes]:
        """(status, the connection, the body bytes already read). A GET closed before any answer is tried
        again, twice: an agent at its connection cap closes the oldest connections not yet answered
        (nodeagent.apilimits), and a client that connected in a flood of others may be among them."""
        for delay in RETRY_DELAYS:
            try:
                return self._attempt(url)
            except _ClosedUnanswered:
                time.sleep(delay)
        try:
            return self._attempt(url)
        except _ClosedUnanswered as exc:
            raise AgentUnavailableError(f"talking to nodeagent on {self.path}: {exc}") from None

    def _attempt(self, url: str) -> tuple[int, socket.socket, bytes]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            sock.sendall(f"GET {url} HTTP/1.0\r\nHost: nodeagent\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    sock.close()
                    raise _ClosedUnanswered("the agent closed the connection without answering")
                head += chunk
        except (ConnectionResetError, BrokenPipeError) as exc:
            sock.close()
            raise _ClosedUnanswered(exc.strerror or str(exc)) from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise AgentUnavailableError(
                f"no nodeagent answers on {self.path} ({exc.strerror}): is `nodeagent run` running?") from None
        except PermissionError:
            sock.close()
            raise AgentUnavailableError(f"no permission to talk to nodeagent on {self.path}: run as root or as "
                                        "a member of its socketGroup") from None
        except OSError as exc:
            sock.close()
            raise AgentUnavailableError(f"talking to nodeagent on {self.path}: {exc}") from None
        header, _, body = head.partition(b"\r\n\r\n")
        status_line = header.split(b"\r\n", 1)[0].split(b" ")
        return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 502, sock, body

    def _chunks(self, url: str) -> Iterator[bytes]:
        status, sock, body = self._open(url)
        try:
            if status >= 400:
                rest = [body]
                while chunk := sock.recv(65536):
                    rest.append(chunk)
                raise ApiError(status, _message(b"".join(rest)))
            if body:
                yield body
            while chunk := sock.recv(65536):
                yield chunk
        except TimeoutError:
            raise AgentUnavailableError(f"nodeagent on {self.path} stopped answering for {self.timeout:.0f}s") from None
        except OSError as exc:
            raise AgentUnavailableError(f"talking to nodeagent on {self.path}: {exc}") from None
        finally:
            sock.close()

    def get(self, url: str, **query: str) -> Any:
        return json.loads(b"".join(self.stream(url, **query)))

    def stream(self, url: str, **query: str) -> Iterator[bytes]:
        return self._chunks(url + (f"?{urlencode(query)}" if query else ""))

    # -- the resources -----------------------------------------------------------------------------

    def pods(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/pods")["items"])

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.get(pod_url(namespace, name)))

    def events(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/events")["items"])


def pod_url(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip() or "error"
