"""The Kubernetes API's pure parts: selectors, the watch feed's resource versions, the static token file,
Tables, the PKI, the kubeconfig, the apiBindAddress field and aggregated discovery."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from nodeagent.config import parse_config
from nodeagent.errors import ConfigError
from nodeagent.kubeapi import discovery
from nodeagent.kubeapi.auth import READ_ONLY_GROUP, ensure_token_file, parse_tokens, token_line
from nodeagent.kubeapi.kubeconfig import KubeconfigError, kubeconfig
from nodeagent.kubeapi.listener import ApiSettings
from nodeagent.kubeapi.pkifiles import PkiFiles
from nodeagent.kubeapi.selectors import EVENT_FIELDS, POD_FIELDS, SelectorError, field_selector, label_selector
from nodeagent.kubeapi.tables import table, wants_table
from nodeagent.kubeapi.tls import Pki
from nodeagent.kubeapi.watch import Expired, PodFeed


def pod(name: str, uid: str, labels: dict[str, str] | None = None, phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": uid,
                                                             "labels": labels or {}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"phase": phase}}


@pytest.mark.parametrize(("selector", "names"), [
    ("", ["a", "b", "c"]),
    ("app=web", ["a"]),
    ("app==web", ["a"]),
    ("app!=web", ["b", "c"]),
    ("app in (web, db)", ["a", "b"]),
    ("app notin (web)", ["b", "c"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c"]),
    ("app in (web,db),tier=front", ["a"]),
])
def test_label_selectors_match_as_the_api_server_does(selector: str, names: list[str]) -> None:
    pods = [pod("a", "1", {"app": "web", "tier": "front"}), pod("b", "2", {"app": "db", "tier": "back"}),
            pod("c", "3", {})]
    match = label_selector(selector)
    assert [p["metadata"]["name"] for p in pods if match(p)] == names


def test_field_selectors_take_the_api_servers_fields_only() -> None:
    match = field_selector("spec.nodeName=n1,status.phase!=Failed,metadata.name=a", POD_FIELDS, "Pod")
    assert match(pod("a", "1")) and not match(pod("b", "2")) and not match(pod("a", "1", phase="Failed"))
    with pytest.raises(SelectorError, match=r'"spec\.secret" is not a known field selector'):
        field_selector("spec.secret=x", POD_FIELDS, "Pod")
    with pytest.raises(SelectorError, match="unable to parse requirement"):
        label_selector("a in b")
    event = {"metadata": {"name": "e"}, "involvedObject": {"name": "a", "uid": "1"}, "source": {"component": "x"}}
    assert field_selector("involvedObject.name=a,involvedObject.uid=1,source=x", EVENT_FIELDS, "Event")(event)


async def test_the_feed_versions_each_change_and_streams_added_modified_deleted() -> None:
    pods = [pod("a", "1")]
    feed = PodFeed(lambda: pods)
    assert [p["metadata"]["resourceVersion"] for p in feed.pods()] == ["2"]
    assert feed.pods()[0]["metadata"]["resourceVersion"] == "2"  # unchanged: same version
    start = feed.version
    pods = [pod("a", "1", phase="Succeeded"), pod("b", "2")]
    waiting = asyncio.create_task(feed.changes(start))
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.changed()
    changes = await asyncio.wait_for(waiting, 2)
    assert [(c.type, c.pod["metadata"]["name"], c.version) for c in changes] == [("MODIFIED", "a", 3), ("ADDED", "b", 4)]
    pods = []
    waiting = asyncio.create_task(feed.changes(4))
    await asyncio.sleep(0)
    assert feed.pods() == []  # a list notices the change first: the watcher hears of it all the same
    assert [(c.type, c.pod["metadata"]["name"]) for c in await asyncio.wait_for(waiting, 2)] == [
        ("DELETED", "a"), ("DELETED", "b")]
    assert feed.pods() == []


async def test_changes_cost_nothing_until_someone_lists_or_watches() -> None:
    """Each change compared every pod's JSON even with no watcher: O(pods) per change, O(pods^2) while 1,000
    pods started, which kept the event loop busy with it."""
    snapshots: list[int] = []
    pods = [pod("a", "1")]

    def listed() -> list[dict[str, Any]]:
        snapshots.append(1)
        return pods

    feed = PodFeed(listed)
    assert [p["metadata"]["resourceVersion"] for p in feed.pods()] == ["2"]
    for _ in range(5):
        feed.changed()
        await asyncio.sleep(0)
    assert len(snapshots) == 1  # nobody asked
    pods = [pod("a", "1", phase="Failed")]
    waiting = asyncio.create_task(feed.changes(2))  # a watch that begins sees what changed meanwhile
    assert [(c.type, c.version) for c in await asyncio.wait_for(waiting, 2)] == [("MODIFIED", 3)]
    waiting = asyncio.create_task(feed.changes(3))
    await asyncio.sleep(0)
    pods = [pod("a", "1", phase="Succeeded")]
    feed.changed()  # someone watches: compared at once
    assert [(c.type, c.version) for c in await asyncio.wait_for(waiting, 2)] == [("MODIFIED", 4)]


async def test_a_watch_from_a_forgotten_version_is_expired() -> None:
    phase = ["a"]
    feed = PodFeed(lambda: [pod("a", "1", phase=phase[0])], history=2)
    for value in ("b", "c", "d"):
        phase[0] = value
        feed.refresh()
    with pytest.raises(Expired, match="too old resource version"):
        await feed.changes(1)
    assert [c.pod["status"]["phase"] for c in await feed.changes(2)] == ["c", "d"]


def test_the_token_file_is_the_api_servers_static_token_file(tmp_path: Path) -> None:
    text = token_line("t1", "alice", ["system:masters"]) + token_line("t2", "bob", [READ_ONLY_GROUP, "other"])
    assert text.splitlines()[1] == 't2,bob,bob,"nodeagent:read-only,other"'
    users = parse_tokens(text + "# a comment\nbroken\n")
    assert sorted((u.name, u.groups) for u in users.values()) == [
        ("alice", ("system:masters",)), ("bob", (READ_ONLY_GROUP, "other"))]
    path = tmp_path / "api" / "tokens.csv"
    ensure_token_file(str(path))
    first = path.read_text()
    ensure_token_file(str(path))
    assert path.read_text() == first and os.stat(path).st_mode & 0o777 == 0o600
    assert [u.groups for u in parse_tokens(first).values()] == [("system:masters",)]


def test_tables_have_kubectls_pod_columns_and_each_rows_metadata() -> None:
    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not wants_table("application/json")
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    data = table("pods", [pod("a", "1")], now, "7")
    assert [c["name"] for c in data["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Ready", "Status", "Restarts", "Age"]
    assert data["rows"][0]["cells"][:3] == ["a", "0/1", "Running"]
    assert data["rows"][0]["object"]["metadata"]["namespace"] == "default"
    assert data["metadata"]["resourceVersion"] == "7"


def test_the_pki_signs_a_serving_and_client_certificates(tmp_path: Path) -> None:
    pki = Pki(str(tmp_path / "pki"))
    pki.ensure(["localhost", "127.0.0.1"])
    before = Path(pki.server_cert).read_bytes()
    pki.ensure(["localhost"])
    assert Path(pki.server_cert).read_bytes() == before  # made once
    assert os.stat(pki.ca_key).st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate(Path(pki.ca_cert).read_bytes())
    server = x509.load_pem_x509_certificate(before)
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    cert, _ = pki.issue("carol", ["g1", "g2"])
    client = x509.load_pem_x509_certificate(cert)
    client.verify_directly_issued_by(ca)
    assert [a.value for a in client.subject] == ["g1", "g2", "carol"]
    pki.server_context()  # the pair loads


def test_kubeconfig_gives_the_admin_token_or_mints_a_read_only_one(tmp_path: Path) -> None:
    settings = ApiSettings(bind_address="0.0.0.0:7443", pki_dir=str(tmp_path / "pki"),
                           token_file=str(tmp_path / "tokens.csv"), full_access_groups=("system:masters",),
                           read_only_groups=(READ_ONLY_GROUP,), node_name="n1")
    with pytest.raises(KubeconfigError, match="start the agent once"):
        kubeconfig(settings, user=None, read_only=False)
    settings.prepare()
    admin = kubeconfig(settings, user=None, read_only=False)
    assert admin["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"]) == \
        Path(settings.pki_dir, "ca.crt").read_bytes()
    reader = kubeconfig(settings, user="dave", read_only=True)
    users = parse_tokens(Path(settings.token_file).read_text())
    assert {(u.name, u.groups) for u in users.values()} == {("admin", ("system:masters",)),
                                                            ("dave", (READ_ONLY_GROUP,))}
    assert reader["users"][0]["user"]["token"] != admin["users"][0]["user"]["token"]


@pytest.mark.parametrize("value", ["6443", "host:", "host:0", "host:70000", "host:x"])
def test_api_bind_address_must_be_host_and_port(value: str) -> None:
    with pytest.raises(ConfigError, match=r"nodeagent\.apiBindAddress"):
        parse_config({"nodeagent": {"apiBindAddress": value}}, "test")


def test_api_bind_address_defaults_to_the_loopback_and_empty_turns_it_off() -> None:
    assert parse_config({}, "test")[0].nodeagent.api_bind_address == "127.0.0.1:10260"
    assert parse_config({"nodeagent": {"apiBindAddress": ""}}, "test")[0].nodeagent.api_bind_address == ""


def test_the_agent_never_imports_cryptography(tmp_path: Path) -> None:
    """cryptography's import (~40 ms) and its memory (~11 MB resident for good, 9 MB of it its Rust library) are
    paid by a child process on the start that makes the PKI, not by the agent."""
    code = f"""
import sys
from nodeagent.kubeapi.listener import ApiSettings
settings = ApiSettings(bind_address="127.0.0.1:7443", pki_dir={str(tmp_path / "pki")!r},
                       token_file={str(tmp_path / "tokens.csv")!r}, full_access_groups=(), read_only_groups=(),
                       node_name="n1")
settings.prepare()
print("cryptography" in sys.modules)
"""
    first = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    again = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert (first.stdout.strip(), again.stdout.strip()) == ("False", "False")
    assert PkiFiles(str(tmp_path / "pki")).complete()


def test_a_pki_that_cannot_be_made_is_an_os_error(tmp_path: Path) -> None:
    """As writing the files in the agent was: the API listener logs it and is not served."""
    (tmp_path / "file").write_text("")
    settings = ApiSettings(bind_address="127.0.0.1:7443", pki_dir=str(tmp_path / "file" / "pki"),
                           token_file=str(tmp_path / "tokens.csv"), full_access_groups=(), read_only_groups=(),
                           node_name="n1")
    with pytest.raises(OSError, match=r"making the PKI in .*NotADirectoryError"):
        settings.prepare()


KUBECTL_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


@pytest.mark.parametrize(("accept", "version"), [
    (KUBECTL_ACCEPT, "v2"),  # kubectl 1.30+
    ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json", None),
    ("application/json, */*", None),  # the Python client: the legacy documents
    ("", None),
])
def test_aggregated_discovery_is_served_to_clients_that_ask_for_it(accept: str, version: str | None) -> None:
    assert discovery.aggregated_version(accept) == version


def test_aggregated_discovery_lists_the_legacy_resources_with_subresources_under_theirs() -> None:
    document = discovery.aggregated("v2", ("", discovery.core_resources()),
                                    ("metrics.k8s.io", discovery.metrics_resources()))
    assert (document["kind"], document["apiVersion"]) == ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2")
    core, metrics = document["items"]
    assert core["metadata"]["name"] == "" and metrics["metadata"]["name"] == "metrics.k8s.io"
    (version,) = core["versions"]
    pods = next(r for r in version["resources"] if r["resource"] == "pods")
    assert (version["version"], pods["scope"], pods["shortNames"], pods["responseKind"]) == (
        "v1", "Namespaced", ["po"], {"group": "", "version": "v1", "kind": "Pod"})
    assert {sub["subresource"]: sub["responseKind"]["kind"] for sub in pods["subresources"]} == {
        "log": "Pod", "exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}
    assert not any("/" in r["resource"] for r in version["resources"])
    nodes = next(r for r in metrics["versions"][0]["resources"] if r["resource"] == "nodes")
    assert (nodes["scope"], nodes["responseKind"]["group"]) == ("Cluster", "metrics.k8s.io")
