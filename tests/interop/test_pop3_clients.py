"""fetchmail and getmail6 (Debian) download a mailbox of awkward messages over POP3, STLS
and POP3S; what each writes out must be byte for byte what the server stored, and the
maildrop must be empty afterwards (both delete what they fetched).

The clients run with HOME in a temporary directory (so they never read or write the
caller's own configuration) and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import poplib
import pwd
import shlex
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server
from tests.interop.conftest import require

USER = "alice@example.test"
CLIENT_TIMEOUT = 90

_ATTACHMENT = bytes(range(256)) * 12  # every octet value, 3 KiB
_B64 = base64.encodebytes(_ATTACHMENT).replace(b"\n", b"\r\n")  # 76-column lines

# Each a message as a client would submit it (CRLF lines); SMTP cannot carry a message
# without a final CRLF, so that case is not here.
AWKWARD: tuple[bytes, ...] = (
    # 8-bit body, and trailing white space that a careless client would trim.
    b"From: sender@remote.test\r\n"
    b"Subject: 8-bit\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, na\xc3\xafve caf\xc3\xa9 \xe2\x80\x93 \xe6\x97\xa5\xe6\x9c\xac\r\n"
    b"trailing blanks   \r\n"
    b"\ttab first\r\n",
    # Long lines (SMTP allows 998 octets before the CRLF).
    b"From: sender@remote.test\r\nSubject: long lines\r\n\r\n"
    + b"a" * 900
    + b"\r\n"
    + (b"0123456789" * 99)[:990]
    + b"\r\nshort\r\n",
    # Lines starting with "." (dot-stuffed on the wire both ways), a lone ".", and lines
    # an mbox writer would have to escape.
    b"From: sender@remote.test\r\n"
    b"Subject: dots\r\n"
    b"\r\n"
    b".\r\n"
    b"..\r\n"
    b"...\r\n"
    b".hidden\r\n"
    b". a dot and a space\r\n"
    b"From the start of a line\r\n"
    b">From quoted\r\n"
    b".\r\n",
    # Nested multipart: mixed > alternative (quoted-printable, HTML) + base64 attachment.
    b"From: sender@remote.test\r\n"
    b"Subject: nested multipart\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer-boundary"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"\r\n"
    b"--outer-boundary\r\n"
    b'Content-Type: multipart/alternative; boundary="inner-boundary"\r\n'
    b"\r\n"
    b"--inner-boundary\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 with a soft line break that goes on and on and on and on and o=\r\n"
    b"n.\r\n"
    b"\r\n"
    b"--inner-boundary\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Caf\xc3\xa9</p>\r\n"
    b"\r\n"
    b"--inner-boundary--\r\n"
    b"\r\n"
    b"--outer-boundary\r\n"
    b'Content-Type: application/octet-stream; name="blob.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="blob.bin"\r\n'
    b"\r\n" + _B64 + b"\r\n"
    b"--outer-boundary--\r\n"
    b"epilogue\r\n",
    # Encoded-word headers (RFC 2047), one folded over two lines. Each header line is
    # kept under 78 columns: getmail re-serialises headers through Python's email
    # package, which re-folds longer ones (its doing, not the server's).
    b"From: =?ISO-8859-1?Q?Andr=E9_Pirard?= <andre@remote.test>\r\n"
    b"To: =?UTF-8?Q?J=C3=BCrgen?= <alice@example.test>\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
    b" =?UTF-8?Q?_und_sch=C3=B6ne_Gr=C3=BC=C3=9Fe?=\r\n"
    b"\r\n"
    b"encoded words above\r\n",
)


def deliver(server: Server) -> list[bytes]:
    """Send the awkward messages to alice over SMTP; what the server stored."""
    with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
        for message in AWKWARD:
            smtp.sendmail("sender@remote.test", [USER], message, mail_options=["BODY=8BITMIME"])
    stored = server.inbox(USER)
    assert len(stored) == len(AWKWARD)
    return stored


def maildrop_stat(server: Server) -> tuple[int, int]:
    pop = poplib.POP3(server.host, server.pop3_port, timeout=30)
    try:
        pop.user(USER)
        pop.pass_("secret")
        return pop.stat()
    finally:
        pop.quit()


def client_env(home: Path) -> dict[str, str]:
    # No USER/LOGNAME: fetchmail running as root would otherwise switch to that user for
    # its MDA. HOME: neither client may read or write the caller's own configuration.
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}


def run(cmd: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=client_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


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
        f'  user "{USER}" there with password "secret"\n'
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


@pytest.fixture
def maildir() -> Iterator[Path]:
    """An empty Maildir. Run as root, getmail refuses to deliver as root and switches to
    ``nobody`` (the destination's ``user``): so the Maildir is outside pytest's private
    temporary tree, owned by that user."""
    top = Path(tempfile.mkdtemp(prefix="mw-maildir-"))
    try:
        path = top / "Maildir"
        for sub in ("", "cur", "new", "tmp"):
            (path / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for p in (top, path, path / "cur", path / "new", path / "tmp"):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
        yield path
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("transport", ["plain", "pop3s"])
def test_getmail_downloads_byte_for_byte(
    server: Server, tmp_path: Path, maildir: Path, transport: str
) -> None:
    getmail = require("getmail")
    stored = deliver(server)
    home = tmp_path / "home"
    home.mkdir()
    if transport == "plain":
        retriever = f"type = SimplePOP3Retriever\nport = {server.pop3_port}\n"
    else:
        retriever = (
            f"type = SimplePOP3SSLRetriever\nport = {server.pop3s_port}\nca_certs = {server.cert}\n"
        )
    as_user = "user = nobody\n" if os.geteuid() == 0 else ""
    rc = home / "getmailrc"
    # delivered_to/received = false: getmail adds no Delivered-To or Received header.
    # It always writes a Return-Path from the one in the message, at the top: the
    # server's stored copy already starts with exactly that line.
    rc.write_text(
        "[retriever]\n"
        f"{retriever}"
        "server = 127.0.0.1\n"
        f"username = {USER}\n"
        "password = secret\n"
        "\n"
        "[destination]\n"
        "type = Maildir\n"
        f"path = {maildir}/\n"
        f"{as_user}"
        "\n"
        "[options]\n"
        "verbose = 2\n"
        "read_all = true\n"
        "delete = true\n"
        "delivered_to = false\n"
        "received = false\n"
    )
    rc.chmod(0o600)
    r = run([getmail, "--getmaildir", str(home), "--rcfile", str(rc)], home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(AWKWARD)} messages" in r.stdout, r.stdout
    # Maildir files use the local line end, LF. The stored messages are CRLF lines with
    # no bare CR or LF in them (SMTP DATA), so LF -> CRLF undoes exactly that and nothing
    # else: the comparison is otherwise byte for byte.
    files = list((maildir / "new").iterdir()) + list((maildir / "cur").iterdir())
    raw = [p.read_bytes() for p in files]
    assert all(b"\r" not in m for m in raw)
    downloaded = sorted(m.replace(b"\n", b"\r\n") for m in raw)
    assert downloaded == sorted(stored)
    assert maildrop_stat(server) == (0, 0)
    assert server.inbox(USER) == []
