"""The URL of an httpGet probe or hook, built as the kubelet's formatURL builds it.

    http_get_url("HTTP", "127.0.0.1", 6443, "livez?exclude=etcd") -> "http://127.0.0.1:6443/livez?exclude=etcd"

A path without a leading "/" gets one (Go's url.URL.String does so for a URL with a host); an IPv6 host
is bracketed (net.JoinHostPort).
"""

from __future__ import annotations


def http_get_url(scheme: str, host: str, port: int | str | None, path: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if path and not path.startswith(("/", "?", "#")):
        path = f"/{path}"
    return f"{scheme.lower()}://{host}:{port}{path}"
