"""staticPodURL against a real aiohttp server on loopback: following changes, surviving failures, no leaks."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.integration.harness import NODE, AgentHarness, wait_for

SECRET = "s3cr3t-bearer-value"
URL_SECRET = "pw-in-the-url"
QUERY_SECRET = "token-in-the-query"
POD = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '%s']}]\n"


def two_pods(seconds: str = "3600") -> bytes:
    return (POD % ("alpha", seconds) + "---\n" + POD % ("beta", "3600")).encode()


class ManifestServer:
    """Serves one manifest; what it answers is set by the test. Runs its own loop in a thread."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.etag: str | None = None
        self.mode = "normal"  # normal, slow, endless
        self.requests: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.mode == "slow":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"kind: Pod\n")
            while self.mode == "slow" and self.runner is not None:
                await asyncio.sleep(0.1)  # stalls until the test moves on or stops the server
            return response
        if self.mode == "endless":
            response = web.StreamResponse()
            await response.prepare(request)
            chunk = b"# padding\n" * 10000
            for _ in range(2000):  # 200 MB, far past the cap
                await response.write(chunk)
            return response
        if self.etag and request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304)
        headers = {"ETag": self.etag} if self.etag else {}
        return web.Response(body=self.body, status=self.status, headers=headers)

    def start(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        if not self.thread.is_alive():
            self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(tls, port), self.loop).result(10)

    async def _start(self, tls: ssl.SSLContext | None, port: int) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        runner, self.runner = self.runner, None  # a stalled answer sees this and ends
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self.loop).result(10)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[ManifestServer]:
    created = ManifestServer()
    created.start()
    try:
        yield created
    finally:
        created.close()


def url_agent(harness: AgentHarness, server: ManifestServer, *, scheme: str = "http",
              extra: dict[str, Any] | None = None) -> AgentHarness:
    harness.use_host_network()  # the server listens on the test's loopback
    harness.configure({
        "staticPodURL": f"{scheme}://ops:{URL_SECRET}@127.0.0.1:{server.port}/pods.yaml?token={QUERY_SECRET}",
        "staticPodURLHeader": {"Authorization": [f"Bearer {SECRET}"], "X-Fleet": ["edge"]},
        "httpCheckFrequency": "1s", **(extra or {}),
    })
    harness.start()
    return harness


def container_ids(agent: AgentHarness) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["containerStatuses"][0].get("containerID", "") for p in agent.pods()}


def all_running(agent: AgentHarness, names: list[str]) -> dict[str, str] | None:
    """The container IDs, once exactly these pods run (one snapshot of the API, so IDs and states agree)."""
    pods = agent.pods()
    statuses = {p["metadata"]["name"]: p["status"]["containerStatuses"][0] for p in pods}
    if set(statuses) != {f"{n}-{NODE}" for n in names} or not all("running" in s["state"] for s in statuses.values()):
        return None
    return {name: status["containerID"] for name, status in statuses.items()}


def failures(agent: AgentHarness) -> list[str]:
    return [e["message"] for e in agent.events() if e["reason"] == "ManifestURLFailed"]


def test_follows_the_url_with_etags_and_headers(harness: AgentHarness, server: ManifestServer) -> None:
    server.body, server.etag = two_pods(), '"v1"'
    agent = url_agent(harness, server)
    before = wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="both pods running")
    first = server.requests[0]
    assert first["Authorization"] == f"Bearer {SECRET}" and first["X-Fleet"] == "edge"
    wait_for(lambda: any(r.get("If-None-Match") == '"v1"' for r in server.requests), what="a conditional GET")
    assert container_ids(agent) == before  # 304: nothing changes
    pod = agent.pod("alpha")
    assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "http"
    assert " http" in agent.cli("get", "pods", "-o", "wide").stdout
    described = agent.cli("describe", "pod", "alpha").stdout
    assert (f"Source:           http http://ops:REDACTED@127.0.0.1:{server.port}/pods.yaml?token=REDACTED "
            "(last fetched ") in described

    server.body, server.etag = two_pods("3601"), '"v2"'  # alpha changes: a new pod replaces it
    wait_for(lambda: agent.pod("alpha")["spec"]["containers"][0]["command"] == ["sleep", "3601"]
             and all_running(agent, ["alpha", "beta"]), what="alpha replaced")
    after = container_ids(agent)
    assert after[f"beta-{NODE}"] == before[f"beta-{NODE}"] and after[f"alpha-{NODE}"] != before[f"alpha-{NODE}"]

    server.body, server.etag = (POD % ("beta", "3600")).encode(), '"v3"'  # alpha gone from the body
    wait_for(lambda: list(container_ids(agent)) == [f"beta-{NODE}"], what="alpha stopped")
    assert container_ids(agent)[f"beta-{NODE}"] == before[f"beta-{NODE}"]


@pytest.mark.parametrize(("setup", "reason"), [
    ({"status": 500}, "HTTP 500 Internal Server Error"),
    ({"status": 404}, "HTTP 404 Not Found"),
    ({"body": b"\x00\x01garbage"}, "invalid manifest: binary data"),
    ({"body": two_pods() + b"---\n" + (POD % ("Bad_Name", "1")).encode()}, 'invalid manifest: document 3: metadata.name'),
    ({"mode": "endless"}, "the body is larger than 10 MiB"),
    ({"mode": "slow"}, "no complete answer within 10s"),
    ({"refused": True}, "cannot connect to 127.0.0.1"),
], ids=["500", "404", "garbage", "invalid-pod-among-valid", "endless-body", "slow-body", "refused"])
def test_a_failure_keeps_the_pods_running(harness: AgentHarness, server: ManifestServer, setup: dict[str, Any],
                                          reason: str) -> None:
    server.body = two_pods()
    agent = url_agent(harness, server)
    before = wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="both running")
    port = server.port
    if setup.get("refused"):
        server.stop()
    for key, value in setup.items():
        if key != "refused":
            setattr(server, key, value)
    message = wait_for(lambda: [m for m in failures(agent) if reason in m], timeout=25, what=reason)[0]
    assert message.endswith("keeping the last 2 pod(s) from it running")
    assert container_ids(agent) == before
    server.status, server.mode, server.body = 200, "normal", two_pods()
    if setup.get("refused"):
        server.start(port=port)
    wait_for(lambda: any(e["reason"] == "ManifestURLRecovered" for e in agent.events()), timeout=25, what="recovery")
    assert container_ids(agent) == before
    event = next(e for e in agent.events() if e["reason"] == "ManifestURLFailed")
    assert event["type"] == "Warning"


def test_secrets_never_leak(harness: AgentHarness, server: ManifestServer, tmp_path: Path) -> None:
    server.body = two_pods()
    agent = url_agent(harness, server)
    wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="running")
    server.status = 500  # errors carry URLs: they must be redacted too
    wait_for(lambda: failures(agent), what="a failure")
    server.status = 200
    outputs = [agent.agent_log()]
    for command in (("get", "pods", "-o", "json"), ("get", "pods", "-o", "yaml"), ("get", "pods", "-o", "wide"),
                    ("describe", "pod", "alpha"), ("events", "-o", "json"), ("events",)):
        outputs.append(agent.cli(*command).stdout)
    outputs.append(agent.cli_raw("/metrics"))
    outputs.append(json.dumps(agent.client.get("/nodeagent/v1/sources")))
    outputs += [p.read_text(errors="replace") for p in agent.state.rglob("*") if p.is_file() and p.suffix == ".json"]
    doctor = agent.doctor()
    assert "ok    config: read" in doctor.stdout
    outputs += [doctor.stdout, doctor.stderr]
    for text in outputs:
        for secret in (SECRET, URL_SECRET, QUERY_SECRET):
            assert secret not in text


def test_tls_with_a_ca_the_test_made(harness: AgentHarness, server: ManifestServer, tmp_path: Path) -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(tls)
    server.stop()
    server.start(tls=tls)
    server.body = two_pods()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    agent = url_agent(harness, server, scheme="https")
    message = wait_for(lambda: failures(agent), what="refused without the CA")[0]
    assert "TLS" in message and "certificate verify failed" in message
    agent.stop()
    agent.configure({"nodeagent": {"staticPodURLTLS": {"caFile": str(ca_file)}}})
    agent.start()
    wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="running over TLS")


def test_both_sources_at_once_and_the_file_wins(harness: AgentHarness, server: ManifestServer) -> None:
    server.body = two_pods()
    harness.write("beta.yaml", POD % ("beta", "3602"))
    harness.write("gamma.yaml", POD % ("gamma", "3600"))
    agent = url_agent(harness, server)
    wait_for(lambda: all_running(agent, ["alpha", "beta", "gamma"]), what="all three")
    beta = agent.pod("beta")
    assert beta["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert beta["spec"]["containers"][0]["command"] == ["sleep", "3602"]
    duplicate = next(e for e in agent.events() if e["reason"] == "DuplicateManifest")
    assert "files win" in duplicate["message"] and "beta.yaml" in duplicate["message"]


@pytest.mark.parametrize("empty_means_none", [True, False])
def test_an_empty_body(harness: AgentHarness, server: ManifestServer, empty_means_none: bool) -> None:
    server.body = two_pods()
    agent = url_agent(harness, server, extra={"nodeagent": {"staticPodURLEmptyMeansNone": empty_means_none}})
    before = wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="running")
    server.body = b"\n"
    if empty_means_none:
        wait_for(lambda: not agent.pods(), what="all http pods removed")
    else:
        wait_for(lambda: [m for m in failures(agent) if "the body is empty" in m], what="refused")
        assert container_ids(agent) == before


def test_an_unreachable_url_at_start_stops_nothing(harness: AgentHarness, server: ManifestServer) -> None:
    server.body = two_pods()
    agent = url_agent(harness, server)
    before = wait_for(lambda: all_running(agent, ["alpha", "beta"]), what="running")
    agent.stop()
    server.stop()
    agent.start()
    wait_for(lambda: failures(agent), what="the URL refused at start")
    assert container_ids(agent) == before
