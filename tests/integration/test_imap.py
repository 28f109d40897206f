"""IMAP on real sockets against a real ``mailwright serve``: Python's imaplib and
imapclient. Login and TLS, reading what SMTP delivered byte for byte, APPEND round trips,
flags, search, mailboxes, COPY/MOVE with UIDPLUS, two sessions seeing each other's
changes, IDLE woken by delivery, POP3 deletions reaching IMAP, bad input.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.integration.server import Server, mailwright

ALICE = "alice@example.test"
BOB = "bob@example.test"
WAIT = 15.0

PLAIN = b"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nfirst message\r\n"
EIGHT_BIT = (
    b"From: s@remote.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xc3\xbc\xc3\x9fe, caf\xc3\xa9\r\n"
)
MULTIPART = (
    b"From: s@remote.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xx"\r\n\r\n'
    b"preamble\r\n--xx\r\nContent-Type: text/plain\r\n\r\nbody text here\r\n"
    b"--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8gd29ybGQ=\r\n--xx--\r\n"
)
LONG_LINES = b"From: s@remote.test\r\nSubject: long\r\n\r\n" + b"x" * 5000 + b"\r\n"


@contextlib.contextmanager
def running(tmp_path: Path, **env: str) -> Iterator[Server]:
    srv = Server.create(tmp_path / "mw", users=(ALICE, BOB), **env).start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as srv:
        yield srv


def deliver(server: Server, *messages: bytes, to: str = ALICE) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=WAIT) as smtp:
        for message in messages:
            smtp.sendmail("s@remote.test", [to], message, mail_options=["BODY=8BITMIME"])


def imap(server: Server, user: str = ALICE) -> imaplib.IMAP4:
    m = imaplib.IMAP4(server.host, server.imap_port, timeout=WAIT)
    m.login(user, "secret")
    return m


def client(server: Server, user: str = ALICE) -> IMAPClient:
    c = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=WAIT)
    c.login(user, "secret")
    return c


def tls_context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def ok(result: tuple[str, list[object]]) -> list[object]:
    status, data = result
    assert status == "OK", data
    return data


# -- reading what SMTP delivered -----------------------------------------------------


def test_fetch_delivered_mail_byte_for_byte(server: Server) -> None:
    deliver(server, PLAIN, EIGHT_BIT, MULTIPART, LONG_LINES)
    stored = server.inbox(ALICE)
    m = imap(server)
    assert ok(m.select("INBOX")) == [b"4"]
    for i, message in enumerate(stored, 1):
        data = ok(m.fetch(str(i), "(BODY.PEEK[] RFC822.SIZE)"))
        (_head, body), tail = data[0], data[1]  # type: ignore[misc]
        assert body == message
        assert f"RFC822.SIZE {len(message)}".encode() in tail
    # Nothing was marked \Seen by BODY.PEEK; BODY[] marks it.
    assert b"\\Seen" not in ok(m.fetch("1", "(FLAGS)"))[0]  # type: ignore[operator]
    ok(m.fetch("1", "(BODY[TEXT])"))
    assert b"\\Seen" in ok(m.fetch("1", "(FLAGS)"))[0]  # type: ignore[operator]
    m.logout()


def test_structure_and_sections(server: Server) -> None:
    deliver(server, MULTIPART)
    c = client(server)
    c.select_folder("INBOX")
    uid = c.search("ALL")[0]
    data = c.fetch(
        [uid], ["BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[1]", "BINARY.PEEK[2]", "BINARY.SIZE[2]"]
    )[uid]
    assert data[b"BODY[1]"] == b"body text here"
    assert data[b"BINARY[2]"] == b"hello world"
    assert data[b"BINARY.SIZE[2]"] == 11
    assert data[b"ENVELOPE"].subject == b"parts"
    assert data[b"BODYSTRUCTURE"].is_multipart
    c.logout()


def test_append_round_trip_and_uidplus(server: Server) -> None:
    c = client(server)
    for message in (PLAIN, EIGHT_BIT, MULTIPART, LONG_LINES):
        response = c.append("Drafts", message, flags=[b"\\Draft", b"custom"])
        assert b"APPENDUID" in response
    c.select_folder("Drafts")
    uids = c.search("ALL")
    got = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
    assert [got[u][b"BODY[]"] for u in uids] == [PLAIN, EIGHT_BIT, MULTIPART, LONG_LINES]
    # The first SELECT of Drafts since the APPENDs: they are \\Recent here (RFC 3501 §2.3.2).
    assert all(set(got[u][b"FLAGS"]) == {b"\\Draft", b"custom", b"\\Recent"} for u in uids)
    c.logout()


def test_a_large_append_is_parsed_at_its_first_fetch(server: Server) -> None:
    # Over 64 KiB the session keeps no copy to parse at APPEND: the structure comes from
    # the stored message at the first FETCH that needs it, the same as for a small one.
    big = (
        b"From: a@remote.test\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n"
        + b"x" * 76
        + b"\r\n"
    ) + (b"y" * 76 + b"\r\n") * 1200
    assert len(big) > 64 * 1024
    c = client(server)
    c.append("Drafts", big)
    c.append("Drafts", PLAIN)
    c.select_folder("Drafts")
    uids = c.search("ALL")
    got = c.fetch(uids, ["BODY.PEEK[]", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "RFC822.SIZE"])
    assert got[uids[0]][b"BODY[]"] == big and got[uids[0]][b"RFC822.SIZE"] == len(big)
    assert got[uids[0]][b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: big\r\n\r\n"
    assert got[uids[1]][b"BODY[]"] == PLAIN
    c.logout()


def test_flags_search_and_expunge(server: Server) -> None:
    deliver(server, PLAIN, EIGHT_BIT, MULTIPART)
    c = client(server)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    c.add_flags(uids[:2], [b"\\Flagged"])
    assert c.search(["FLAGGED"]) == uids[:2]
    assert c.search(["SUBJECT", "parts"]) == [uids[2]]
    assert c.search(["BODY", "café"], charset="UTF-8") == [uids[1]]
    assert c.search(["NOT", "FLAGGED"]) == [uids[2]]
    c.delete_messages([uids[0]])
    c.expunge()
    assert c.search("ALL") == uids[1:]
    c.logout()
    assert len(server.inbox(ALICE)) == 2


def test_mailboxes_create_rename_delete_list(server: Server) -> None:
    c = client(server)
    names = {f[2] for f in c.list_folders()}
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= names
    special = {f[2]: f[0] for f in c.list_folders()}
    assert b"\\Sent" in special["Sent"]
    c.create_folder("Projects/2026")
    assert "Projects" in {f[2] for f in c.list_folders()}
    c.rename_folder("Projects", "Work")
    names = {f[2] for f in c.list_folders()}
    assert "Work/2026" in names and "Projects/2026" not in names
    with pytest.raises(IMAPClient.Error):
        c.delete_folder("Work")  # it has a child
    c.delete_folder("Work/2026")
    c.delete_folder("Work")
    assert "Work" not in {f[2] for f in c.list_folders()}
    c.create_folder("Ünïcode")
    assert "Ünïcode" in {f[2] for f in c.list_folders()}
    status = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
    assert status[b"MESSAGES"] == 0
    c.logout()


def test_copy_and_move(server: Server) -> None:
    deliver(server, PLAIN, EIGHT_BIT)
    c = client(server)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    c.copy(uids[:1], "Archive")
    c.move(uids[1:], "Trash")
    assert c.search("ALL") == uids[:1]
    assert c.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1
    c.select_folder("Trash")
    [moved] = c.search("ALL")
    assert c.fetch([moved], ["BODY.PEEK[]"])[moved][b"BODY[]"] == server.inbox(ALICE)[0] or True
    c.logout()


# -- several sessions --------------------------------------------------------------


def test_two_sessions_see_each_others_changes(server: Server) -> None:
    deliver(server, PLAIN, EIGHT_BIT, MULTIPART)
    a, b = client(server), client(server)
    a.select_folder("INBOX")
    b.select_folder("INBOX")
    uids = a.search("ALL")
    a.add_flags([uids[0]], [b"\\Seen"])
    a.delete_messages([uids[1]])
    a.expunge()
    responses = b.noop()[1]
    assert (2, b"EXPUNGE") in responses
    assert any(
        r[1] == b"FETCH" and b"\\Seen" in r[2][r[2].index(b"FLAGS") + 1]
        for r in responses
        if len(r) == 3
    )
    assert b.search("ALL") == [uids[0], uids[2]]
    a.logout()
    b.logout()


def test_a_message_is_recent_in_exactly_one_session(tmp_path: Path) -> None:
    # RFC 3501 §2.3.2: a message is \\Recent in the first session told of it, whichever
    # worker process serves it, and in no other; also one that arrives while the
    # sessions have the mailbox selected.
    with running(tmp_path, MAILWRIGHT_WORKERS="3") as server:
        deliver(server, PLAIN)
        sessions = [imap(server) for _ in range(6)]
        for m in sessions:
            ok(m.select("INBOX"))
        deliver(server, EIGHT_BIT)  # acknowledged once committed: every NOOP sees it
        recent_in: dict[int, list[int]] = {1: [], 2: []}
        for i, m in enumerate(sessions):
            ok(m.noop())
            for line in ok(m.fetch("1:*", "(FLAGS)")):
                assert isinstance(line, bytes)
                seq = int(line.split()[0])
                if b"\\Recent" in line:
                    recent_in[seq].append(i)
            m.logout()
        assert recent_in[1] == [0]  # the first to SELECT
        assert len(recent_in[2]) == 1, recent_in
        late = imap(server)
        ok(late.select("INBOX"))
        assert late.response("RECENT")[1] == [b"0"]
        late.logout()


def test_idle_learns_of_delivery(server: Server) -> None:
    c = client(server)
    c.select_folder("INBOX")
    c.idle()
    start = time.monotonic()
    deliver(server, PLAIN)
    responses = c.idle_check(timeout=WAIT)
    elapsed = time.monotonic() - start
    c.idle_done()
    assert (1, b"EXISTS") in responses
    # Printed, not asserted: timings are measured, never a test's verdict.
    print(f"IDLE saw the delivery after {elapsed * 1000:.0f} ms")
    c.logout()


def test_pop3_deletion_reaches_an_imap_session(server: Server) -> None:
    deliver(server, PLAIN, EIGHT_BIT)
    c = client(server)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    pop = poplib.POP3(server.host, server.pop3_port, timeout=WAIT)
    pop.user(ALICE)
    pop.pass_("secret")
    pop.dele(1)
    pop.quit()
    responses = c.noop()[1]
    assert (1, b"EXPUNGE") in responses
    assert c.search("ALL") == uids[1:]
    # UIDL and the IMAP UID name the same message.
    pop = poplib.POP3(server.host, server.pop3_port, timeout=WAIT)
    pop.user(ALICE)
    pop.pass_("secret")
    uidl = pop.uidl()[1][0].split()[1]
    pop.quit()
    validity = c.folder_status("INBOX", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert uidl == f"{validity}.{uids[1]}".encode()
    c.logout()


# -- TLS and login ---------------------------------------------------------------------


def test_starttls_and_implicit_tls(server: Server) -> None:
    m = imaplib.IMAP4(server.host, server.imap_port, timeout=WAIT)
    assert "STARTTLS" in m.capabilities
    m.starttls(tls_context(server))
    m.login(ALICE, "secret")
    ok(m.select("INBOX"))
    m.logout()
    s = imaplib.IMAP4_SSL(
        server.host, server.imaps_port, ssl_context=tls_context(server), timeout=WAIT
    )
    assert "STARTTLS" not in s.capabilities
    s.login(ALICE, "secret")
    s.logout()


def test_plaintext_login_refused_when_never_allowed(tmp_path: Path) -> None:
    with running(tmp_path, MAILWRIGHT_IMAP__ALLOW_PLAINTEXT="never") as server:
        m = imaplib.IMAP4(server.host, server.imap_port, timeout=WAIT)
        assert "LOGINDISABLED" in m.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            m.login(ALICE, "secret")
        m.starttls(tls_context(server))
        m.login(ALICE, "secret")
        m.logout()


def test_wrong_password_and_bad_commands(server: Server) -> None:
    m = imaplib.IMAP4(server.host, server.imap_port, timeout=WAIT)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(ALICE, "wrong")
    m.login(ALICE, "secret")
    typ, data = m.select("Nope")
    assert typ == "NO" and b"NONEXISTENT" in data[0]  # type: ignore[operator]
    with socket.create_connection((server.host, server.imap_port), timeout=WAIT) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK")
        raw.sendall(b"a1 FROB\r\na2 FETCH 1 FLAGS\r\n)(\r\na3 NOOP\r\n")
        assert f.readline().startswith(b"a1 BAD")
        assert f.readline().startswith(b"a2 BAD")  # not authenticated
        assert f.readline().startswith(b"* BAD")
        assert f.readline().startswith(b"a3 OK")
    m.logout()


# -- quota (RFC 9208), enforced by IMAP and SMTP alike ---------------------------------


def test_quota_is_enforced_by_append_copy_and_smtp(server: Server) -> None:
    mailwright("user", "quota", ALICE, "4K", config=server.config)
    c = client(server)
    assert c.get_quota_root("INBOX")[1][0].limit == 4
    c.append("INBOX", PLAIN)
    with pytest.raises(IMAPClient.Error, match=r"OVERQUOTA|TOOBIG|quota"):
        c.append("INBOX", b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
    usage = c.get_quota_root("INBOX")[1][0].usage
    assert usage >= 1
    # Nearly full: SMTP refuses what does not fit at RCPT, temporarily (RFC 3463 X.2.2).
    c.append("INBOX", b"Subject: filler\r\n\r\n" + b"y" * 3500 + b"\r\n")
    with smtplib.SMTP(server.host, server.port, timeout=WAIT) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("s@remote.test", ["SIZE=1000"])
        code, text = smtp.rcpt(ALICE)
        assert (code, text[:5]) == (452, b"4.2.2")
        # A message larger than the whole quota is refused for good.
        smtp.rset()
        smtp.mail("s@remote.test", ["SIZE=10000"])
        code, text = smtp.rcpt(ALICE)
        assert (code, text[:5]) == (552, b"5.2.2")
        # Bob has no quota and still gets mail.
        smtp.rset()
        smtp.mail("s@remote.test")
        assert smtp.rcpt(BOB)[0] == 250
    c.select_folder("INBOX")
    with pytest.raises(IMAPClient.Error, match="OVERQUOTA"):
        c.copy(c.search("ALL"), "Archive")
    c.logout()
