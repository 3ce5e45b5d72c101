"""Issue 12 item 10: a mistyped staticPodURLHeader (or staticPodURL) never prints its secret in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.config import load_config, parse_config
from nodeagent.errors import ConfigError

SECRET = "s3cr3t-token-value"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"staticPodURLHeader": {"Authorization": f"Bearer {SECRET}"}},
         'header "Authorization": must be a list of strings'),
        ({"staticPodURLHeader": {"Authorization": [f"Bearer {SECRET}", 7]}},
         'header "Authorization": must be a list of strings'),
        ({"staticPodURLHeader": f"Authorization: Bearer {SECRET}"}, "must be a map of header names"),
        ({"staticPodURLHeader": [f"Authorization: Bearer {SECRET}"]}, "must be a map of header names"),
        ({"staticPodURLHeader": {f"Authorization: Bearer {SECRET}": ["x"]}}, "a header name is not a valid"),
        ({"staticPodURLHeader": {"X-Token": [f"{SECRET}\r\nX-Injected: 1"]}}, 'header "X-Token": a value contains'),
        ({"staticPodURL": [f"https://ops:{SECRET}@config.example.com/pods.yaml"]}, "must be an http:// or https://"),
        ({"staticPodURL": f"ftp://ops:{SECRET}@config.example.com/pods.yaml"}, "must be an http:// or https://"),
    ],
    ids=["string-not-list", "not-all-strings", "string-not-map", "list-not-map", "secret-in-name", "line-break",
         "url-in-a-list", "url-not-http"],
)
def test_config_errors_never_quote_a_secret(tmp_path: Path, config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config, "nodeagent.yaml")
    assert message in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_mistyped_header_in_a_config_file_is_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "nodeagent.yaml"
    path.write_text(f"staticPodURL: https://cfg.example.com/p.yaml\nstaticPodURLHeader:\n  Authorization: Bearer {SECRET}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value) == (
        f"{path}: staticPodURLHeader: header \"Authorization\": must be a list of strings (the value is not shown: "
        "it may be a secret)")


def test_well_formed_headers_still_load() -> None:
    config, _ = parse_config({"staticPodURLHeader": {"Authorization": [f"Bearer {SECRET}"], "X-A": []}}, "c")
    assert config.static_pod_url_header == {"Authorization": [f"Bearer {SECRET}"], "X-A": []}
