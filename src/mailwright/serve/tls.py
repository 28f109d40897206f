"""TLS: server contexts (TLS 1.2+ only) and the self-signed development certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailwright.core.errors import ConfigError


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError:
        key_name, path = ("tls.key", key) if cert.exists() else ("tls.cert", cert)
        raise ConfigError(key_name, f"file not found: {path}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("tls.cert", f"cannot load certificate/key: {exc}") from None
    return ctx


def make_self_signed(cert: Path, key: Path, hostname: str, days: int = 825) -> None:
    """A self-signed certificate for ``hostname``, localhost and 127.0.0.1 (development)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt = x509.SubjectAlternativeName(
        [
            x509.DNSName(hostname),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def describe(obj: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """ "TLSv1.3 TLS_AES_256_GCM_SHA384" for a Received header and the log."""
    if obj is None:
        return None
    cipher = obj.cipher()
    return f"{obj.version()} {cipher[0] if cipher else ''}".strip()
