"""Issue 12 item 2, the URL source: a hostile body fails that fetch only, and is parsed off the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

import nodeagent.sources.http as http_module
from tests.security.test_hostile_manifest import json_pod, nested_json
from tests.security.urlserver import Fetcher, Recorder, serving


async def test_a_deep_body_is_a_failed_fetch_and_the_last_good_set_stays() -> None:
    recorder = Recorder(json_pod())
    async with serving(recorder) as base:
        fetcher = Fetcher(base + "/pods.json")
        good = await fetcher.fetch()
        assert good is not None and [p.name for p in good] == ["web-node1"]
        recorder.body = json_pod(labels=nested_json(600))
        assert await fetcher.fetch() is None
    assert fetcher.reasons() == ["ManifestURLFailed"]
    assert "nests maps and lists more than 100 deep" in fetcher.events[0][2]
    assert "keeping the last 1 pod(s) from it running" in fetcher.events[0][2]
    assert fetcher.source.status.pods == 1 and fetcher.source.status.failures == 1


async def test_any_unforeseen_failure_is_a_failed_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Bearer header-secret went wrong")

    monkeypatch.setattr(http_module, "load_manifest", broken)
    async with serving(Recorder(json_pod())) as base:
        fetcher = Fetcher(base + "/pods.json", headers={"Authorization": ["Bearer header-secret"]})
        assert await fetcher.fetch() is None
    assert fetcher.reasons() == ["ManifestURLFailed"]
    message = fetcher.events[0][2]
    assert "RuntimeError" in message and "header-secret" not in message


async def test_a_large_body_is_parsed_off_the_event_loop() -> None:
    pod = ("kind: Pod\nmetadata:\n  name: p%d\n  labels: {a: b}\nspec:\n  containers:\n  - name: c\n"
           "    image: busybox\n    command: [sleep, '3600']\n    env: [{name: A, value: b}]\n")
    body = "---\n".join(pod % i for i in range(15000)).encode()  # ~2.5 MiB: seconds of parsing
    async with serving(Recorder(body)) as base:
        fetcher = Fetcher(base + "/pods.yaml")
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        pods = await fetcher.fetch()
        took = time.monotonic() - started
        ticker.cancel()
    assert pods is not None and len(pods) == 15000
    assert took > 1.0, "the body must take long enough to parse for the test to tell"
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s during a {took:.1f}s fetch"
