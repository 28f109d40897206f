"""The HTTP API over TLS (``http.listen_tls``) with the server's certificate, which a SIGHUP
reloads for HTTPS as for every other listener; links in messages then point at https."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
import urllib.request
from pathlib import Path

from cryptography import x509

from mailwright.serve.tls import make_self_signed
from tests.integration.server import Server
from tests.integration.test_http_api import make_key, message, parsed


def peer_subject(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_https_serves_the_api_and_reloads_its_certificate(tmp_path: Path) -> None:
    server = Server.create(
        tmp_path / "mw",
        users=("bob@example.test",),
        MAILWRIGHT_HTTP__LISTEN_TLS='["127.0.0.1:0"]',
        MAILWRIGHT_HTTP__LISTEN="[]",
        MAILWRIGHT_WORKERS="1",
    )
    key = make_key(server, "--scope", "send")
    server.start()
    try:
        assert server.https_port and not server.http_port
        ctx = ssl.create_default_context(cafile=str(server.cert))
        ctx.check_hostname = False
        request = urllib.request.Request(
            f"https://127.0.0.1:{server.https_port}/v1/messages",
            data=json.dumps(message(unsubscribe=True)).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30, context=ctx) as response:
            assert response.status == 202
        link = str(parsed(server.inbox("bob@example.test")[-1])["List-Unsubscribe"])
        assert link.startswith(f"<https://127.0.0.1:{server.https_port}/v1/unsubscribe/")
        assert peer_subject(server.https_port) == "CN=mx.example.test"
        make_self_signed(server.cert, server.data_dir / "tls" / "key.pem", "renewed.example.test")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "tls.reloaded" not in server.log():
            time.sleep(0.05)
        assert peer_subject(server.https_port) == "CN=renewed.example.test"
    finally:
        server.close()
