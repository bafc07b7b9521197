"""A throwaway certificate authority for the stand-ins (fake Kroger, identity provider, webhook
receivers), so that every one of them serves real https on 127.0.0.1 and the portal's own TLS
verification runs.

The CA is made once per process with ``trustme``. The portal trusts it the standard way:
``trust_test_ca()`` points ``REQUESTS_CA_BUNDLE`` at a bundle holding the CAs the machine
already trusted (whatever ``REQUESTS_CA_BUNDLE`` named before, or certifi's) plus this one. No
``verify=False`` and no setting of the portal's own are involved.

A server becomes https by mixing in ``TLSServerMixin`` before its ``socketserver`` class:
the handshake happens in the request's own thread, so a client that never finishes one
cannot stall the accept loop.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import certifi
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

HOSTS = ("127.0.0.1", "localhost")

_lock = threading.Lock()
_ca: trustme.CA | None = None
_server_cert: trustme.LeafCert | None = None
_context: ssl.SSLContext | None = None
_bundle: Path | None = None


def test_ca() -> trustme.CA:
    global _ca
    with _lock:
        if _ca is None:
            _ca = trustme.CA(organization_name="Portal test CA (throwaway)")
        return _ca


def server_cert() -> trustme.LeafCert:
    """One leaf certificate for 127.0.0.1 and localhost, shared by every stand-in."""
    global _server_cert
    ca = test_ca()
    with _lock:
        if _server_cert is None:
            _server_cert = ca.issue_cert(*HOSTS)
        return _server_cert


def server_context() -> ssl.SSLContext:
    global _context
    cert = server_cert()
    with _lock:
        if _context is None:
            _context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(_context)
        return _context


def trust_test_ca(directory: Path | None = None) -> Path:
    """Make ``requests`` (and everything else reading REQUESTS_CA_BUNDLE) trust the test CA
    besides the CAs it trusted already; returns the bundle's path. Idempotent."""
    global _bundle
    ca = test_ca()
    with _lock:
        if _bundle is not None and os.environ.get("REQUESTS_CA_BUNDLE") == str(_bundle):
            return _bundle
        previous = os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
        folder = directory or Path(tempfile.mkdtemp(prefix="portal-test-ca-"))
        bundle = folder / "ca-bundle.pem"
        machine = Path(previous).read_bytes() if Path(previous).is_file() else b""
        bundle.write_bytes(machine.rstrip(b"\n") + b"\n" + ca.cert_pem.bytes())
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        _bundle = bundle
        return bundle


def spki_fingerprint() -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the stand-ins' certificate: what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes, so a browser trusts this one key only."""
    cert = x509.load_pem_x509_certificate(server_cert().cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class TLSServerMixin:
    """Serve https: mix in before ``ThreadingHTTPServer`` (or any ``socketserver`` server)."""

    def finish_request(self, request: Any, client_address: Any) -> None:
        assert isinstance(request, socket.socket)
        try:
            wrapped = server_context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that gave up or does not trust us: nothing to serve
        try:
            super().finish_request(wrapped, client_address)  # type: ignore[misc]
        finally:
            wrapped.close()  # wrap_socket detached ``request``: closing it would do nothing


def export_server_cert(directory: Path) -> tuple[Path, Path]:
    """Write the stand-ins' certificate chain and key for a stand-in in another process."""
    cert = server_cert()
    chain, key = directory / "server-chain.pem", directory / "server-key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    key.chmod(0o600)
    return chain, key


def use_exported_server_cert(chain: Path, key: Path) -> None:
    """In a stand-in's own process: serve the certificate ``export_server_cert`` wrote."""
    global _context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    with _lock:
        _context = context
