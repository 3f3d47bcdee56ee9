"""Trusting one node daemon's certificate, and nothing else.

den makes a certificate per cluster start and hands it, with its SHA-256
fingerprint, to whoever may call the cluster (:mod:`compute.backends.tls`).
:func:`pinned_context` checks the certificate against the fingerprint and
builds a TLS context whose only trust anchor is that certificate, with the
host name (an IP address in its alternative names) checked too: the handshake
fails against any other server, before a request or a token is sent.
Standard library only (it runs on nodes' Python 3.9 too).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl


class PinMismatch(ValueError):
    """The certificate den sent does not have the fingerprint den sent with it."""


def fingerprint_of(cert_pem: str) -> str:
    """SHA-256 of a PEM certificate's DER form, as lower-case hex."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()


def pinned_context(cert_pem: str, fingerprint: str) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert_pem`` (whose fingerprint
    must be ``fingerprint``); TLS 1.2 or newer."""
    if not hmac.compare_digest(fingerprint_of(cert_pem), fingerprint.lower().replace(":", "")):
        raise PinMismatch("the daemon's certificate does not match its fingerprint")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert_pem)
    return context
