"""fetchmail and getmail6 (Debian) download a mailbox of awkward messages over POP3, STLS
and POP3S; what each writes out must be byte for byte what the server stored, and the
maildrop must be empty afterwards (both delete what they fetched).

The clients run with HOME in a temporary directory (so they never read or write the
caller's own configuration) and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import poplib
import shlex
from pathlib import Path

import pytest

from tests.integration.server import Server
from tests.interop.conftest import require
from tests.interop.peers import PASSWORD, USER, deliver, getmail_retrieves_everything, run


def maildrop_stat(server: Server) -> tuple[int, int]:
    pop = poplib.POP3(server.host, server.pop3_port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        return pop.stat()
    finally:
        pop.quit()


# -- fetchmail -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["stls", "pop3s"])
def test_fetchmail_downloads_byte_for_byte(server: Server, tmp_path: Path, transport: str) -> None:
    fetchmail = require("fetchmail")
    stored = deliver(server)
    home = tmp_path / "home"
    out = tmp_path / "fetched"
    home.mkdir()
    out.mkdir()
    if transport == "stls":
        # sslcertck (the default since 6.4) makes fetchmail insist on STLS.
        port, tls = server.pop3_port, ""
    else:
        port, tls = server.pop3s_port, "ssl"
    rc = home / ".fetchmailrc"
    # set invisible: no Received header of fetchmail's own. no rewrite: addresses in the
    # header left alone. no stripcr: with an MDA fetchmail would otherwise turn CRLF into
    # LF. The MDA is a shell command: one file per message. fetchmail checks the
    # certificate's name, and matches only DNS names, not the IP address it connected to.
    rc.write_text(
        "set no bouncemail\n"
        "set invisible\n"
        f"poll 127.0.0.1 protocol pop3 port {port} timeout 30\n"
        f'  user "{USER}" there with password "{PASSWORD}"\n'
        f'  {tls} sslcertck sslcertfile "{server.cert}" sslcommonname "mx.example.test"\n'
        "  no rewrite no stripcr no forcecr no keep fetchall\n"
        f'  mda "cat > {shlex.quote(str(out))}/msg.$$"\n'
    )
    rc.chmod(0o600)  # fetchmail refuses a password file others can read
    r = run(
        [
            fetchmail,
            "--fetchmailrc",
            str(rc),
            "--idfile",
            str(home / ".fetchids"),
            "--pidfile",
            str(home / ".fetchmail.pid"),
            "--nodetach",
            "--verbose",
        ],
        home,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    if transport == "stls":
        assert "POP3> STLS" in r.stdout and "+OK Begin TLS" in r.stdout, r.stdout
    downloaded = sorted(p.read_bytes() for p in out.iterdir())
    assert downloaded == sorted(stored)
    assert maildrop_stat(server) == (0, 0)
    assert server.inbox(USER) == []


# -- getmail6 --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["plain", "pop3s"])
def test_getmail_downloads_byte_for_byte(
    server: Server, tmp_path: Path, maildir: Path, transport: str
) -> None:
    if transport == "plain":
        retriever = f"type = SimplePOP3Retriever\nport = {server.pop3_port}\n"
    else:
        retriever = (
            f"type = SimplePOP3SSLRetriever\nport = {server.pop3s_port}\nca_certs = {server.cert}\n"
        )
    getmail_retrieves_everything(server, tmp_path, maildir, retriever)
    assert maildrop_stat(server) == (0, 0)
