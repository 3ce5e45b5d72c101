"""Talking to the agent: HTTP over its Unix socket, with the standard library only (so the CLI starts fast).

The socket: --socket, else $NODEAGENT_SOCKET, else `nodeagent.socket` of the configuration file
(/etc/nodeagent/nodeagent.yaml, or $NODEAGENT_CONFIG), else /run/nodeagent/nodeagent.sock.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from nodeagent.errors import AgentUnavailableError, NodeAgentError

DEFAULT_SOCKET = "/run/nodeagent/nodeagent.sock"
DEFAULT_CONFIG = "/etc/nodeagent/nodeagent.yaml"
TIMEOUT_SECONDS = 30.0


class ApiError(NodeAgentError):
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def socket_path(option: str | None) -> str:
    if option:
        return option
    if os.environ.get("NODEAGENT_SOCKET"):
        return os.environ["NODEAGENT_SOCKET"]
    config = os.environ.get("NODEAGENT_CONFIG", DEFAULT_CONFIG)
    try:
        import yaml

        with open(config) as handle:
            data = yaml.load(handle, Loader=yaml.CSafeLoader)
        configured = data.get("nodeagent", {}).get("socket") if isinstance(data, dict) else None
        if isinstance(configured, str) and configured:
            return configured
    except (OSError, ValueError, AttributeError):
        pass
    return DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AgentClient:
    def __init__(self, path: str, *, timeout: float | None = TIMEOUT_SECONDS) -> None:
        self.path = path
        self.timeout = timeout

    def _request(self, url: str) -> http.client.HTTPResponse:
        connection = _UnixConnection(self.path, self.timeout)
        try:
            connection.request("GET", url)
            return connection.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnavailableError(
                f"no nodeagent answers on {self.path} ({exc.strerror}): is `nodeagent run` running?") from None
        except PermissionError:
            raise AgentUnavailableError(f"no permission to talk to nodeagent on {self.path}: run as root or as "
                                        "a member of its socketGroup") from None
        except OSError as exc:
            raise AgentUnavailableError(f"talking to nodeagent on {self.path}: {exc}") from None

    def get(self, url: str, **query: str) -> Any:
        response = self._request(url + (f"?{urlencode(query)}" if query else ""))
        body = response.read()
        if response.status >= 400:
            raise ApiError(response.status, _message(body))
        return json.loads(body)

    def stream(self, url: str, **query: str) -> Iterator[bytes]:
        response = self._request(url + (f"?{urlencode(query)}" if query else ""))
        if response.status >= 400:
            raise ApiError(response.status, _message(response.read()))
        while chunk := response.read1(65536):
            yield chunk

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
