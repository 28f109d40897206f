"""swaks (Debian) against a running server: plain, STARTTLS, pipelining, attachments, refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.server import Server
from tests.interop.conftest import require


def swaks(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require("swaks"),
            "--server",
            f"{server.host}:{server.port}",
            "--helo",
            "swaks.test",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_swaks_plain(server: Server) -> None:
    r = swaks(
        server,
        "--from",
        "s@remote.test",
        "--to",
        "alice@example.test",
        "--header",
        "Subject: plain",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    [msg] = server.inbox("alice@example.test")
    assert b"Subject: plain" in msg


def test_swaks_starttls_and_pipelining(server: Server) -> None:
    r = swaks(
        server,
        "--tls",
        "--pipeline",
        "--from",
        "s@remote.test",
        "--to",
        "alice@example.test,bob@example.test",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TLS started" in r.stdout
    assert len(server.inbox("alice@example.test")) == 1
    assert len(server.inbox("bob@example.test")) == 1


def test_swaks_attachment_round_trip(server: Server, tmp_path: Path) -> None:
    attachment = tmp_path / "data.bin"
    attachment.write_bytes(bytes(range(256)) * 2000)  # 512 KB: stored through a blob file
    r = swaks(
        server, "--from", "s@remote.test", "--to", "alice@example.test", "--attach", str(attachment)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    [msg] = server.inbox("alice@example.test")
    import base64
    import email

    parsed = email.message_from_bytes(msg)
    parts = [p for p in parsed.walk() if p.get_filename() == "data.bin"]
    assert parts and base64.b64decode(parts[0].get_payload()) == attachment.read_bytes()


def test_swaks_unknown_user_and_relay(server: Server) -> None:
    r = swaks(server, "--from", "s@remote.test", "--to", "nobody@example.test")
    assert r.returncode != 0
    assert "550 5.1.1" in r.stdout
    r = swaks(server, "--from", "s@remote.test", "--to", "victim@foreign.test")
    assert r.returncode != 0
    assert "550 5.7.1" in r.stdout
    assert server.inbox("alice@example.test") == []
