"""httpGet URLs as the kubelet's formatURL builds them."""

from __future__ import annotations

import pytest

from nodeagent.agent.httpurl import http_get_url


@pytest.mark.parametrize(("host", "path", "url"), [
    ("127.0.0.1", "/healthz", "http://127.0.0.1:80/healthz"),
    ("127.0.0.1", "livez?exclude=etcd", "http://127.0.0.1:80/livez?exclude=etcd"),
    ("127.0.0.1", "", "http://127.0.0.1:80"),
    ("127.0.0.1", "?verbose", "http://127.0.0.1:80?verbose"),
    ("::1", "readyz", "http://[::1]:80/readyz"),
])
def test_http_get_url(host: str, path: str, url: str) -> None:
    assert http_get_url("HTTP", host, 80, path) == url
