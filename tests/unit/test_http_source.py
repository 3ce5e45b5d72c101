"""The URL source's pure parts: redaction, the jittered back-off, and what is kept secret."""

import random

import pytest

from nodeagent.sources.http import HttpSettings, HttpSource, redact_url, retry_delay


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://config.example.com/pods/edge.yaml", "https://config.example.com/pods/edge.yaml"),
        ("https://ops:hunter22@config.example.com/p.yaml", "https://ops:REDACTED@config.example.com/p.yaml"),
        ("https://tokenonly@config.example.com/p.yaml", "https://REDACTED@config.example.com/p.yaml"),
        ("https://s3.example.com/p.yaml?X-Amz-Signature=abc123&X-Amz-Expires=60",
         "https://s3.example.com/p.yaml?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED"),
        ("http://127.0.0.1:8080/p.yaml#frag", "http://127.0.0.1:8080/p.yaml"),
    ],
    ids=["plain", "password", "user-token", "query", "fragment"],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_retry_delay_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 20.0), (30, 20.0)):
        for _ in range(200):
            delay = retry_delay(failures, 20.0, rng)
            assert ceiling / 2 <= delay <= ceiling
    spread = {round(retry_delay(4, 20.0, rng), 3) for _ in range(50)}
    assert len(spread) > 40  # a fleet does not come back in step


def test_every_secret_is_redacted_from_messages() -> None:
    url = "https://ops:pw-in-url@cfg.example.com/pods.yaml?token=query-secret"
    source = HttpSource(HttpSettings(url=url, headers={"Authorization": ["Bearer header-secret"]}),
                        node_name="n1", on_event=lambda *_: None)
    message = source.redact(f"GET {url} with Bearer header-secret failed; query-secret and pw-in-url leaked")
    for secret in ("header-secret", "query-secret", "pw-in-url"):
        assert secret not in message
    assert source.origin == "https://ops:REDACTED@cfg.example.com/pods.yaml?token=REDACTED"
    assert source.origin in message
