"""The API's PKI under stateDir/pki: a CA, the serving certificate it signs, client certificates on demand.

Made on first start with `cryptography` (EC P-256, as kubeadm's defaults are RSA-2048 or ECDSA); the keys are
0600. A client certificate's CN is the user and each O a group, as the API server reads them. The agent runs
`python -m nodeagent.kubeapi.tls PKI_DIR HOST...` to make the CA and serving certificate, so that it never
loads `cryptography` itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodeagent.kubeapi.pkifiles import PkiFiles

CA_YEARS = 10
LEAF_YEARS = 1


@dataclass(frozen=True, slots=True)
class Pki(PkiFiles):
    def ensure(self, hosts: list[str]) -> None:
        """The CA and the serving certificate (for `hosts`, names or addresses), made when missing."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if not (os.path.exists(self.ca_cert) and os.path.exists(self.ca_key)):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodeagent-ca")])
            now = dt.datetime.now(dt.UTC)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                    .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                 content_commitment=False, key_encipherment=False,
                                                 data_encipherment=False, key_agreement=False,
                                                 encipher_only=False, decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            _write(self.ca_key, _key_pem(key))
            _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        if not (os.path.exists(self.server_cert) and os.path.exists(self.server_key)):
            cert_pem, key_pem = self.issue("nodeagent-apiserver", [], hosts=hosts)
            _write(self.server_key, key_pem)
            _write(self.server_cert, cert_pem)

    def issue(self, user: str, groups: list[str], *, hosts: list[str] | None = None) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) signed by the CA: a serving one for `hosts`, else a client one."""
        with open(self.ca_key, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), None)
        with open(self.ca_cert, "rb") as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, user)])
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=365 * LEAF_YEARS))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if hosts is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(host) for host in hosts]),
                                            critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: str, data: bytes) -> None:
    """Written whole (a temporary file renamed), 0600."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


if __name__ == "__main__":
    Pki(sys.argv[1]).ensure(sys.argv[2:])
