"""Issue 12, end to end: a real agent whose staticPodURL serves hostile bodies one after another, while a
file pod runs. The agent lives on, the file pod's container is never touched (same ID, no restart), each
body is a ManifestURLFailed or a DuplicateManifest, and the API answers promptly while a large body is
parsed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.test_http_source import ManifestServer
from tests.security.test_hostile_manifest import json_pod, nested_json

pytestmark = pytest.mark.root

WEB_UID = "0c0ffee0-0000-4000-8000-00000000000b"
WEB = (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: web, uid: {WEB_UID}}}\n"
       "spec:\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n")
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))
HOSTILE: list[tuple[str, bytes, str]] = [  # (what, body, the reason it must cause)
    ("deep JSON with a wrong type", json_pod(labels=nested_json(600)), "ManifestURLFailed"),
    ("deep YAML", b"kind: Pod\nspec:\n  hostNetwork: 3\n  x: " + b"[" * 5000 + b"]" * 5000 + b"\n", "ManifestURLFailed"),
    ("a 5000-digit number", json_pod(extra_spec=', "priority": ' + "9" * 5000), "ManifestURLFailed"),
    ("an alias bomb", BOMB.encode(), "ManifestURLFailed"),
    ("binary", bytes(range(256)) * 40, "ManifestURLFailed"),
    ("a python tag", b"kind: !!python/object/apply:os.system [touch /tmp/pwned]\n", "ManifestURLFailed"),
    ("the file pod's name", WEB.replace("uid: " + WEB_UID, "uid: other").encode(), "DuplicateManifest"),
    ("the file pod's UID", WEB.replace("name: web", "name: impostor").encode(), "DuplicateManifest"),
]


@pytest.fixture
def server() -> Iterator[ManifestServer]:
    created = ManifestServer()
    created.start()
    try:
        yield created
    finally:
        created.close()


def web_container(agent: AgentHarness) -> tuple[str, int] | None:
    status = agent.container_status("web", "c")
    return (status["containerID"], status["restartCount"]) if "running" in status["state"] else None


def reasons(agent: AgentHarness, since: int) -> list[dict[str, Any]]:
    return agent.events()[since:]


def test_hostile_url_bodies_never_touch_the_file_pod(harness: AgentHarness, server: ManifestServer) -> None:
    server.body = b""
    harness.use_host_network()
    harness.write("web.yaml", WEB)
    harness.configure({"staticPodURL": f"http://127.0.0.1:{server.port}/pods", "httpCheckFrequency": "1s"})
    harness.start()
    before = wait_for(lambda: web_container(harness), what="the file pod running")

    for what, body, reason in HOSTILE:
        seen = len(harness.events())
        server.body = body
        event = wait_for(lambda seen=seen, reason=reason: next(  # type: ignore[misc]
            (e for e in reasons(harness, seen) if e["reason"] == reason), None), what=f"{reason} for {what}")
        assert "web" not in event["message"] or reason == "DuplicateManifest", event["message"]
        assert web_container(harness) == before, f"the file pod changed after {what}"
    assert not any(p["metadata"]["name"] == f"impostor-{NODE}" for p in harness.pods())

    # ~8 MiB of pods, the last one invalid: seconds of parsing, all off the event loop, then refused.
    pod = "kind: Pod\nmetadata: {name: p%d}\nspec:\n  containers: [{name: c, image: busybox}]\n"
    seen, requests = len(harness.events()), len(server.requests)
    large = "---\n".join(pod % i for i in range(100000)).encode()[: 8 * 2**20].rsplit(b"---", 1)[0]
    server.body = large + b"---\n" + (pod % 0).replace("busybox", "[busybox]").encode()
    wait_for(lambda: len(server.requests) > requests, what="the large body fetched")
    slowest = 0.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        started = time.monotonic()
        harness.client.get("/api/v1/pods")
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    assert slowest < 1.0, f"the API took {slowest:.1f}s to answer while the body was parsed"
    failed = wait_for(lambda: next((e for e in reasons(harness, seen) if e["reason"] == "ManifestURLFailed"), None),
                      what="the large body refused", timeout=60)
    assert "document 100000" in failed["message"] or "spec.containers[0].image" in failed["message"]

    server.body = b"kind: Pod\nmetadata: {name: alpha}\nspec:\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n"
    wait_for(lambda: any(p["metadata"]["name"] == f"alpha-{NODE}" for p in harness.pods()), what="alpha at last",
             timeout=60)
    assert web_container(harness) == before
