"""Who is asking (a bearer token, or a client certificate signed by our CA) and what they may do.

The token file is the API server's static token file: `token,user,uid,"group1,group2"` a line. Groups
decide access: a full-access group may do everything the API serves (exec and port-forward included); a
read-only group may GET (list, watch, logs) but not pods/exec, pods/attach, pods/portforward. Writes are
refused for everyone (405) except DELETE of a pod. The Unix socket is not checked: its mode is the guard.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from nodeagent.kubeapi.status import forbidden, method_not_allowed, unauthorized

FULL_ACCESS_GROUP = "system:masters"
READ_ONLY_GROUP = "nodeagent:read-only"
STREAMING = ("exec", "attach", "portforward")
MAX_TOKEN_FILE = 1 << 20
_POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]


def token_line(token: str, user: str, groups: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([token, user, user, ",".join(groups)])
    return out.getvalue()


def parse_tokens(text: str) -> dict[str, User]:
    """The users of a static token file, by the SHA-256 of their token; malformed lines are skipped."""
    users: dict[str, User] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 3 or not row[0] or row[0].startswith("#"):
            continue
        groups = tuple(g for g in row[3].split(",") if g) if len(row) > 3 else ()
        users[_digest(row[0])] = User(row[1], groups)
    return users


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_token_file(path: str) -> None:
    """A token file with one full-access token, made (0600) when there is none."""
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token_line(secrets.token_urlsafe(32), "admin", [FULL_ACCESS_GROUP]))


def add_token(path: str, user: str, groups: list[str]) -> str:
    """A new token for `user`, appended to the token file (the agent reads it again on its next request)."""
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(token_line(token, user, groups))
    return token


def first_token(path: str, group: str) -> str | None:
    """The first token of the file whose user is in `group`."""
    with open(path) as handle:
        for row in csv.reader(io.StringIO(handle.read(MAX_TOKEN_FILE))):
            if len(row) > 3 and group in row[3].split(","):
                return row[0]
    return None


class Authenticator:
    """The token file, read again when it changes (a new token works without a restart)."""

    def __init__(self, token_file: str, full_groups: list[str], read_only_groups: list[str]) -> None:
        self.token_file = token_file
        self.full_groups = set(full_groups)
        self.read_only_groups = set(read_only_groups)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def _tokens(self) -> dict[str, User]:
        try:
            info = os.stat(self.token_file)
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            with open(self.token_file) as handle:
                self._users = parse_tokens(handle.read(MAX_TOKEN_FILE))
            self._stamp = stamp
        return self._users

    def authenticate(self, request: web.Request, tls: ssl.SSLObject) -> User | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self._tokens().get(_digest(header[len("Bearer "):].strip()))
        cert = tls.getpeercert()
        if cert:  # verified against our CA by the TLS handshake
            subject = [(str(attr[0]), str(attr[1])) for rdn in cert.get("subject", ()) for attr in rdn]
            names = [value for key, value in subject if key == "commonName"]
            groups = tuple(value for key, value in subject if key == "organizationName")
            if names:
                return User(names[0], groups)
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        write = request.method not in ("GET", "HEAD")
        match = _POD_PATH.match(request.path)
        sub = match.group("sub") if match else None
        streaming = sub in STREAMING
        tls = request.get_extra_info("ssl_object")
        if write and request.path.startswith(("/api/", "/apis/")) and not streaming and \
                not (request.method == "DELETE" and match is not None and sub is None):
            return method_not_allowed()
        if not isinstance(tls, ssl.SSLObject):
            return await handler(request)  # the Unix socket
        user = self.authenticate(request, tls)
        if user is None:
            return unauthorized()
        groups = set(user.groups)
        if groups & self.full_groups:
            return await handler(request)
        if groups & self.read_only_groups and not write and not streaming:
            return await handler(request)
        verb = "create" if streaming or request.method == "POST" else {"DELETE": "delete"}.get(request.method, "get")
        resource = f"pods/{sub}" if match and sub else ("pods" if match else request.path)
        return forbidden(user.name, verb, resource, match.group("ns") if match else None,
                         match.group("name") if match else None)
