"""TLS contexts built from files: the BTP server's certificate and key (and, for mutual TLS, the
CA its clients' certificates must be signed by), and the CA bundle a dialed ``wss://`` peer's
certificate must chain to.

A file that cannot be read, or does not hold what it should, stops start-up with a
``ConfigurationError`` naming the key and the file. Messages carry OpenSSL's reason code at most,
never the files' contents.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from connector.domain.errors import ConfigurationError

_MINIMUM = ssl.TLSVersion.TLSv1_2


def _readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(f"{key}: cannot read {path}: {exc.strerror}") from None


def _reason(exc: ssl.SSLError) -> str:
    return f" ({exc.reason})" if exc.reason else ""


def _load_ca(context: ssl.SSLContext, key: str, path: Path) -> None:
    _readable(key, path)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigurationError(f"{key}: {path} holds no PEM certificate{_reason(exc)}") from None


def _no_password() -> bytes:
    # Never OpenSSL's interactive prompt: an encrypted key simply fails to load.
    return b""


def server_context(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> ssl.SSLContext:
    """The BTP server's context: TLS 1.2 at least; with ``client_ca_file``, a client certificate
    signed by that CA is required (mutual TLS)."""
    cert_key, key_key = "btp_server.tls.cert_file", "btp_server.tls.key_file"
    _readable(cert_key, cert_file)
    _readable(key_key, key_file)
    # The certificate alone first, so that a bad one is not reported as a bad key.
    _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert_key, cert_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM
    # A TLS 1.2 renegotiation is handshake work a client could make us repeat at will.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"{key_key}: {key_file} is not an unencrypted PEM private key of the certificate "
            f"in {cert_file}{_reason(exc)}"
        ) from None
    if client_ca_file is not None:
        _load_ca(context, "btp_server.tls.client_ca_file", client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca_file: Path | None = None, *, key: str = "tls_ca_file") -> ssl.SSLContext:
    """The context for dialing a ``wss://`` peer: the system's trust store, or only the CAs of
    ``ca_file`` when given; the host name is checked either way."""
    if ca_file is None:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name required
        _load_ca(context, key, ca_file)
    context.minimum_version = _MINIMUM
    return context
