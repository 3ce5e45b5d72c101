"""Hostile images against a real agent (runc runtime, host network, the test's registries on loopback): an
image's /etc/passwd as a FIFO or a link to a device, a registry that sends its token realm over http, and the
staging directory an interrupted pull left. Each pod gets a clear error; the agent goes on serving."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.images import Pushed, busybox_layer, image_config, push_image
from tests.integration.registry import Registry, registry  # noqa: F401
from tests.integration.test_runc import remove_everywhere
from tests.security.crafted import info, layer_of, tar_of

INTERRUPTED = "layer-interrupted"


@dataclass
class Servers:
    """An https "registry" that answers every request with a Bearer challenge whose realm is plain http, and
    that token server, counting what it is asked."""

    registry_host: str
    token_requests: list[str] = field(default_factory=list)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "registry.pem", directory / "registry.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def serve(handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_servers(cert: Path, key: Path) -> Servers:
    requests: list[str] = []

    class Token(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"token": "t"}).encode())

        def log_message(self, *_: object) -> None:
            pass

    token = serve(Token)
    realm = f"http://127.0.0.1:{token.server_address[1]}/token"

    class Challenging(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="registry"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure = serve(Challenging, context)
    return Servers(f"127.0.0.1:{secure.server_address[1]}", requests, [token, secure])


@dataclass(frozen=True)
class Images:
    fifo_passwd: Pushed
    device_passwd: Pushed
    busybox: Pushed


@pytest.fixture(scope="module")
def images(registry: Registry) -> Images:  # noqa: F811
    busybox = busybox_layer()
    fifo = layer_of(tar_of([(info("etc/passwd", tarfile.FIFOTYPE), b"")]))
    device = layer_of(tar_of([(info("dev/zero", tarfile.CHRTYPE, mode=0o666, device=(1, 5)), b""),
                              (info("etc/passwd", tarfile.SYMTYPE, linkname="/dev/zero"), b"")]))
    return Images(
        fifo_passwd=push_image(registry, "security/fifo", "1", [busybox, fifo],
                               config=image_config([busybox, fifo], user="app", cmd=["sleep", "3600"])),
        device_passwd=push_image(registry, "security/device", "1", [busybox, device],
                                 config=image_config([busybox, device], user="app", cmd=["sleep", "3600"])),
        busybox=push_image(registry, "security/busybox", "1", [busybox],
                           config=image_config([busybox], user="nobody", cmd=["sleep", "3600"])),
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    started = start_servers(cert, key)
    try:
        yield started, cert
    finally:
        for server in started.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, registry: Registry,  # noqa: F811
          servers: tuple[Servers, Path]) -> Iterator[AgentHarness]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    harness = AgentHarness(tmp_path_factory.mktemp("security-agent"))
    try:
        harness.configure({"nodeagent": {"runtime": "runc", "insecureRegistries": [registry.host]}})
        harness.use_host_network()
        staged = harness.state / "images" / "tmp" / INTERRUPTED / "fs"  # what a killed pull leaves
        staged.mkdir(parents=True)
        (staged / "half-written").write_bytes(b"x" * 4096)
        harness.start(env={"SSL_CERT_FILE": str(servers[1])})  # trusts the https "registry"
        yield harness
    finally:
        if os.environ.get("NODEAGENT_TEST_LOG"):
            print(harness.agent_log())
        try:
            harness.clean_up()
        finally:
            remove_everywhere(harness.cgroup_root)


def pod(name: str, image: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": image}]}})


def waiting(agent: AgentHarness, name: str, reason: str) -> dict[str, Any] | None:
    state = agent.container_status(name, "c")["state"].get("waiting", {})
    return state if state.get("reason") == reason and state.get("message") else None


def test_an_interrupted_pull_staging_directory_is_removed_at_start(agent: AgentHarness) -> None:
    assert os.listdir(agent.state / "images" / "tmp") == []
    assert "removed 1 staging directories of interrupted pulls" in agent.agent_log()


def test_an_image_passwd_that_is_a_fifo_or_a_device(agent: AgentHarness, images: Images) -> None:
    agent.write("fifo.yaml", pod("fifo", images.fifo_passwd.reference))
    agent.write("device.yaml", pod("device", images.device_passwd.reference))
    fifo = wait_for(lambda: waiting(agent, "fifo", "CreateContainerError"), timeout=60, what="the FIFO refused")
    assert fifo["message"] == "cannot read /etc/passwd in the image: not a regular file"
    device = wait_for(lambda: waiting(agent, "device", "CreateContainerError"), timeout=60,
                      what="the device refused")
    # resolved inside the image, to its own /dev/zero: a device node on a nodev mount opens nothing
    assert device["message"] == "cannot read /etc/passwd in the image: Permission denied"
    agent.write("fine.yaml", pod("fine", images.busybox.reference))  # the agent goes on serving
    wait_for(lambda: agent.container_status("fine", "c")["state"].get("running"), timeout=60, what="fine running")
    for name in ("fifo", "device", "fine"):
        agent.remove(f"{name}.yaml")


def test_a_token_realm_over_http_is_refused_for_a_registry_over_https(agent: AgentHarness,
                                                                      servers: tuple[Servers, Path]) -> None:
    secure = servers[0]
    image = f"{secure.registry_host}/private/app:1"
    agent.write("realm.yaml", pod("realm", image))
    refused = wait_for(lambda: waiting(agent, "realm", "ErrImagePull"), timeout=60, what="the pull refused")
    assert (f"registry {secure.registry_host}: refusing token realm 'http://127.0.0.1:" in refused["message"]
            and "it must be https (the registry is not in nodeagent.insecureRegistries)" in refused["message"])
    assert secure.token_requests == []  # no credentials or token request went out in clear
    agent.remove("realm.yaml")
