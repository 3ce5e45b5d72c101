"""Real OCI registries on 127.0.0.1 for tests: Debian's `docker-registry` (distribution 2.8).

Import the fixtures into a test module (no conftest needed):

    from tests.integration.registry import registry, auth_registry  # noqa: F401

`registry` is open to all and lives for the session; `auth_registry` wants htpasswd Basic credentials
(`auth_registry.username`, `.password`). `start_registry()` starts a private one that a test may stop
(`token_registry` below uses it with `auth.token`). `serve_in_netns()` serves a registry's content in
another network namespace too (an agent's "node"), at the same 127.0.0.1:<port>, so one image reference
works on both sides. `CountingProxy` forwards to a registry and counts the requests, to check what a
client downloaded. Everything is stopped and removed afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

REGISTRY_BINARY = "/usr/bin/docker-registry"
HTPASSWD_BINARY = "/usr/bin/htpasswd"


@dataclass
class Registry:
    """A running docker-registry: `host` is `127.0.0.1:<port>`, `storage` its filesystem root."""

    host: str
    storage: Path
    config: Path
    process: subprocess.Popen[bytes] | None = None
    username: str | None = None
    password: str | None = None
    log: Path | None = None
    netns: str | None = None  # the network namespace it listens in (None: the test's own)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def basic_authorization(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def start(self) -> None:
        assert self.process is None, "already running"
        self.log = self.config.with_suffix(".log")
        netns = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*netns, REGISTRY_BINARY, "serve", str(self.config)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if self.netns:
            self._wait_in_netns()
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # 401: up, and wanting credentials
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not answer within 15s")

    def _wait_in_netns(self) -> None:
        """Until it listens in its namespace: one probe process there, polling (it is not reachable from here)."""
        probe = ("import socket, sys, time\n"
                 "deadline = time.monotonic() + 15\n"
                 "while time.monotonic() < deadline:\n"
                 "    try:\n"
                 "        socket.create_connection(sys.argv[1].split(':'), timeout=1).close()\n"
                 "        sys.exit(0)\n"
                 "    except OSError:\n"
                 "        time.sleep(0.05)\n"
                 "sys.exit(1)\n")
        assert self.netns is not None
        done = subprocess.run(["nsenter", f"--net={self.netns}", "--", sys.executable, "-c", probe, self.host],
                              check=False, timeout=30)
        if done.returncode != 0:
            self.stop()
            log = self.log.read_text() if self.log else ""
            raise RuntimeError(f"docker-registry in {self.netns} did not answer within 15s: {log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes: a test may tamper with them."""
        hex_digest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_registry(directory: Path, *, auth: dict[str, object] | None = None) -> Registry:
    """Start a registry keeping its files under `directory`; the caller stops it (`stop()`)."""
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.skip("needs Debian's docker-registry (apt-get install docker-registry)")
    directory.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}, "delete": {"enabled": True},
                    "cache": {}},
        "http": {"addr": host, "secret": "nodeagent-tests"},
    }
    if auth is not None:
        config["auth"] = auth
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    created = Registry(host, directory / "storage", config_path)
    created.start()
    return created


def serve_in_netns(registry: Registry, netns: str, directory: Path) -> Registry:
    """A second docker-registry on the same storage, configuration (auth included) and 127.0.0.1:<port>, in
    the network namespace `netns`: what is pushed to `registry` can be pulled there. The caller stops it."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text(registry.config.read_text())
    served = Registry(registry.host, registry.storage, config, username=registry.username,
                      password=registry.password, netns=netns)
    served.start()
    return served


@contextlib.contextmanager
def running_registry(directory: Path, *, auth: dict[str, object] | None = None) -> Iterator[Registry]:
    created = start_registry(directory, auth=auth)
    try:
        yield created
    finally:
        created.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An open registry on 127.0.0.1 for the whole session."""
    with running_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on 127.0.0.1 that wants htpasswd (bcrypt) Basic credentials for everything."""
    if not os.access(HTPASSWD_BINARY, os.X_OK):
        pytest.skip("needs htpasswd (apt-get install apache2-utils)")
    directory = tmp_path_factory.mktemp("auth-registry")
    htpasswd = directory / "htpasswd"
    username, password = "puller", "s3cret-pw"
    subprocess.run([HTPASSWD_BINARY, "-B", "-b", "-c", str(htpasswd), username, password], check=True,
                   capture_output=True)
    with running_registry(directory / "registry",
                          auth={"htpasswd": {"realm": "nodeagent-tests", "path": str(htpasswd)}}) as running:
        running.username, running.password = username, password
        yield running


@dataclass
class CountingProxy:
    """An HTTP proxy in the test's event loop in front of a registry, counting requests by kind
    ("manifests", "blobs", ...) so a test can tell what a client downloaded."""

    upstream: str
    redirect_blobs: bool = False  # answer blob GETs with a 307 to another port ("storage"), as registries do
    counts: Counter[str] = field(default_factory=Counter)
    host: str = ""
    storage_host: str = ""
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None

    async def __aenter__(self) -> CountingProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port, storage_port = free_port(), free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        await web.TCPSite(self._runner, "127.0.0.1", storage_port).start()
        self.host, self.storage_host = f"127.0.0.1:{port}", f"127.0.0.1:{storage_port}"
        self._session = ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        kind = "manifests" if "manifests" in parts else "blobs" if "blobs" in parts else "other"
        if request.host == self.storage_host:
            kind = "storage" + (" with authorization" if "Authorization" in request.headers else "")
        elif self.redirect_blobs and kind == "blobs" and request.method == "GET":
            self.counts["GET blobs redirected"] += 1
            raise web.HTTPTemporaryRedirect(f"http://{self.storage_host}{request.path}?signature=test")
        self.counts[f"{request.method} {kind}"] += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, f"http://{self.upstream}{request.path_qs}",
                                         headers=headers, data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            passed = {k: v for k, v in answer.headers.items()
                      if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return web.Response(status=answer.status, headers=passed, body=body)
