"""What the tests driving real mail clients share: a corpus of awkward messages, delivering
it over SMTP, Maildir line ends, and running a client with HOME in a temporary directory
(so it never reads or writes the caller's own configuration) under a time limit.
"""

from __future__ import annotations

import base64
import os
import smtplib
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.integration.server import Server
from tests.interop.conftest import require

USER = "alice@example.test"
PASSWORD = "secret"
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


def deliver(server: Server, messages: Iterable[bytes] = AWKWARD) -> list[bytes]:
    """Send ``messages`` to alice over SMTP; everything then in her INBOX, as stored."""
    before = len(server.inbox(USER))
    messages = list(messages)
    with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
        for message in messages:
            smtp.sendmail("sender@remote.test", [USER], message, mail_options=["BODY=8BITMIME"])
    stored = server.inbox(USER)
    assert len(stored) == before + len(messages)
    return stored


def from_local(raw: bytes) -> bytes:
    """A message as a client wrote it to a Maildir, in the local line end (LF), back to
    what the server holds. Stored messages are CRLF lines with no bare CR or LF in them
    (SMTP DATA, or APPENDed so), so LF -> CRLF undoes exactly that and nothing else: a
    comparison is otherwise byte for byte."""
    assert b"\r" not in raw, raw[:200]
    return raw.replace(b"\n", b"\r\n")


def client_env(home: Path) -> dict[str, str]:
    # No USER/LOGNAME: fetchmail running as root would otherwise switch to that user for
    # its MDA. HOME: no client may read or write the caller's own configuration.
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}


def run(cmd: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run a client to completion (bounded by CLIENT_TIMEOUT), its output captured."""
    return subprocess.run(
        cmd,
        env=client_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


def output(r: subprocess.CompletedProcess[str]) -> str:
    """A finished client's exit status and everything it printed, for assertion messages."""
    return f"{r.args!r} exited {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


# -- getmail6 (POP3 and IMAP retrievers) -----------------------------------------------


def getmail_retrieves_everything(
    server: Server, tmp_path: Path, maildir: Path, retriever: str
) -> None:
    """Deliver AWKWARD, then run getmail6 once: ``retriever`` (the [retriever] lines
    naming type and port) from 127.0.0.1 as alice into ``maildir`` (the ``maildir``
    fixture), deleting what it retrieved. It must have written every message byte for
    byte as stored, and left the store's INBOX empty."""
    stored = deliver(server)
    home = tmp_path / "home"
    home.mkdir()
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
        f"password = {PASSWORD}\n"
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
    r = run([require("getmail"), "--getmaildir", str(home), "--rcfile", str(rc)], home)
    assert r.returncode == 0, output(r)
    assert f"{len(AWKWARD)} messages" in r.stdout, output(r)
    # Maildir files are in the local line end: see from_local.
    files = list((maildir / "new").iterdir()) + list((maildir / "cur").iterdir())
    assert sorted(from_local(p.read_bytes()) for p in files) == sorted(stored)
    assert server.inbox(USER) == []
