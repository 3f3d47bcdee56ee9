"""Certificates for node daemons that listen beyond loopback.

den makes one self-signed certificate per cluster start (ECDSA P-256, the
hosts' addresses as its subject alternative names) with ``cryptography``.
Its private key goes to the hosts over SSH (a 0600 file beside the daemon)
and is never stored in den; the certificate and its SHA-256 fingerprint go on
the cluster's state, and den hands them, with the daemon's URL, to whoever may
call the cluster. Callers trust exactly that certificate (it is the only
anchor of their TLS context, and its fingerprint is checked against den's
answer), so the handshake itself refuses any other server before a token is
sent. A new start makes a new certificate: a key that leaked from a host
stops working at the next ``up``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long a daemon's certificate is valid; a cluster gets a new one at every start.
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class DaemonCert:
    """A certificate (PEM), its private key (PEM, for the hosts only) and fingerprint."""

    cert_pem: str
    key_pem: str = field(repr=False)
    fingerprint: str


def fingerprint_of(cert_pem: str) -> str:
    """SHA-256 of a PEM certificate's DER form, as lower-case hex."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()


def make_daemon_cert(address: str, hosts: Iterable[str]) -> DaemonCert:
    """A fresh certificate for the daemons of cluster ``address`` on ``hosts``
    (IP addresses or DNS names; loopback is added so a tunnel works too)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"den cluster {address}"[:64])])
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 (readable on 3.9 for reviewers)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return DaemonCert(cert_pem=cert_pem, key_pem=key_pem, fingerprint=fingerprint_of(cert_pem))
