"""Message submission (RFC 6409, RFC 8314, RFC 4954) and relay control on a running server:
smtplib on the STARTTLS and implicit-TLS listeners, and the classic open-relay tricks on
the port-25 role."""

from __future__ import annotations

import smtplib
import sqlite3
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server

MESSAGE = b"From: alice@example.test\r\nTo: someone@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def tls_context(server: Server) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False
    return ctx


def queued(server: Server) -> list[tuple[str, str, str]]:
    with sqlite3.connect(server.data_dir / "mailwright.db") as db:
        return db.execute("SELECT queue_id, sender, recipient FROM queue ORDER BY id").fetchall()


def submit(server: Server, **kw: object) -> smtplib.SMTP:
    smtp = smtplib.SMTP(server.host, server.submission_port, timeout=10)
    smtp.ehlo("client.test")
    return smtp


def test_auth_is_required_and_then_mail_goes_anywhere(server: Server) -> None:
    with submit(server) as smtp:
        assert smtp.has_extn("auth")
        assert "PLAIN" in smtp.esmtp_features["auth"] and "LOGIN" in smtp.esmtp_features["auth"]
        assert smtp.has_extn("dsn")
        code, text = smtp.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")
        smtp.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.login("alice@example.test", "wrong")
        assert err.value.smtp_code == 535
        smtp.login("alice@example.test", "secret")
        refused = smtp.sendmail(
            "alice@example.test",
            ["someone@remote.test", "bob@example.test"],
            MESSAGE,
            rcpt_options=["NOTIFY=FAILURE,DELAY"],
        )
        assert refused == {}
    [(qid, sender, rcpt)] = queued(server)
    assert (sender, rcpt) == ("alice@example.test", "someone@remote.test")
    [local] = server.inbox("bob@example.test")
    # The fix-ups of RFC 6409 §8: a Message-ID and a Date were added; no Return-Path on a
    # copy that also leaves the server; the Received header says ESMTPA.
    assert b"\r\nMessage-ID: <" + qid.encode() in local
    assert b"\r\nDate: " in local
    assert not local.startswith(b"Return-Path:")
    assert b"with ESMTPA id " + qid.encode() in local


def test_auth_login_and_implicit_tls(server: Server) -> None:
    with smtplib.SMTP_SSL(
        server.host, server.submissions_port, context=tls_context(server), timeout=10
    ) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")
        smtp.user, smtp.password = "alice@example.test", "secret"
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        assert code == 235
        assert smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
    [stored] = server.inbox("bob@example.test")
    assert b"with ESMTPSA id" in stored


def test_a_user_sends_only_as_its_own_addresses(server: Server) -> None:
    from tests.integration.server import mailwright

    mailwright("alias", "add", "sales@example.test", "alice@example.test", config=server.config)
    with submit(server) as smtp:
        smtp.login("alice@example.test", "secret")
        for sender in ("bob@example.test", "alice@remote.test", "ALICE@other.test"):
            code, text = smtp.mail(sender)
            assert (code, text[:5]) == (553, b"5.7.1"), sender
            smtp.rset()
        for sender in ("alice@example.test", "Alice+news@example.test", "sales@example.test", ""):
            code, _ = smtp.mail(sender)
            assert code == 250, sender
            smtp.rset()


def test_auth_rules_of_rfc_4954(server: Server) -> None:
    with submit(server) as smtp:
        assert smtp.docmd("AUTH", "CRAM-MD5")[0] == 504
        assert smtp.docmd("AUTH", "PLAIN")[0] == 334
        assert smtp.docmd("*") == (501, b"5.0.0 Authentication cancelled")
        assert smtp.docmd("AUTH", "PLAIN !!notbase64")[0] == 501
        smtp.login("alice@example.test", "secret")
        assert smtp.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")[0] == 503  # already
        smtp.mail("alice@example.test")
        assert smtp.docmd("AUTH", "PLAIN")[0] == 503  # not within a transaction


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server.create(tmp_path / "mw", MAILWRIGHT_SUBMISSION__ALLOW_PLAINTEXT="never").start()
    try:
        yield srv
    finally:
        srv.stop(timeout=30)


def test_no_password_in_the_clear_unless_allowed(strict_server: Server) -> None:
    server = strict_server
    with submit(server) as smtp:
        assert not smtp.has_extn("auth")  # RFC 4954 §4: not before TLS
        assert smtp.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")[0] == 538
        smtp.starttls(context=tls_context(server))
        smtp.ehlo("client.test")
        assert smtp.has_extn("auth")
        smtp.login("alice@example.test", "secret")


OPEN_RELAY_TRICKS = [
    ("someone@remote.test", "550 5.7.1"),  # foreign → foreign
    ("user%remote.test@example.test", "550 5.1.1"),  # the percent hack
    ("@example.test:someone@remote.test", "550 5.7.1"),  # a source route
    ('"someone@remote.test"@example.test', "550 5.1.1"),  # a quoted local part with @
    ("someone@remote.test@example.test", "501 5.1.3"),  # two @
    ("someone!remote.test@example.test", "550 5.1.1"),  # a bang path
    ("someone@[127.0.0.1]", "550 5.7.1"),  # an address literal
]


@pytest.mark.parametrize(("rcpt", "expected"), OPEN_RELAY_TRICKS)
def test_never_an_open_relay(server: Server, rcpt: str, expected: str) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("spammer@remote.test")
        code, text = smtp.docmd(f"RCPT TO:<{rcpt}>")  # exactly these bytes on the wire
        assert f"{code} {text.decode()[:5]}" == expected, rcpt
    assert queued(server) == []


def test_port_25_does_not_take_auth(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("auth")
        assert smtp.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")[0] == 502


def test_trusted_networks_relay_without_auth(tmp_path: Path) -> None:
    srv = Server.create(
        tmp_path / "mw", MAILWRIGHT_SMTP__TRUSTED_NETWORKS='["127.0.0.0/8"]'
    ).start()
    try:
        with smtplib.SMTP(srv.host, srv.port, timeout=10) as smtp:
            refused = smtp.sendmail("app@remote.test", ["someone@remote.test"], MESSAGE)
            assert refused == {}
            # From a local domain with keys, relayed mail leaves signed.
            refused = smtp.sendmail("alice@example.test", ["other@remote.test"], MESSAGE)
            assert refused == {}
        assert [r[2] for r in queued(srv)] == ["someone@remote.test", "other@remote.test"]
        with sqlite3.connect(srv.data_dir / "mailwright.db") as db:
            prefixes = [bytes(p) for (p,) in db.execute("SELECT prefix FROM queue ORDER BY id")]
        assert prefixes[0] == b"" and prefixes[1].startswith(b"DKIM-Signature:")
    finally:
        srv.stop(timeout=30)


def wait_for_inbox(server: Server, address: str, count: int) -> list[bytes]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = server.inbox(address)
        if len(got) >= count:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{address}: {len(server.inbox(address))} messages")


def test_a_full_mailbox_after_acceptance_gets_a_dsn(server: Server) -> None:
    from tests.integration.server import mailwright

    # Room for the message as declared (SIZE=), not for it with our trace fields.
    mailwright("user", "quota", "bob@example.test", str(len(MESSAGE) + 10), config=server.config)
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        refused = smtp.sendmail(
            "alice@example.test", ["alice@example.test", "bob@example.test"], MESSAGE
        )
        assert refused == {}
    original, dsn = wait_for_inbox(server, "alice@example.test", 2)
    assert original.endswith(MESSAGE)
    assert b"multipart/report" in dsn and b"Action: failed" in dsn and b"Status: 5.2.2" in dsn
    assert b"Final-Recipient: rfc822; bob@example.test" in dsn
    assert server.inbox("bob@example.test") == []


def test_notify_success_for_a_local_recipient(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("alice@example.test", ["RET=HDRS", "ENVID=env+2B1"])
        assert (
            smtp.rcpt("bob@example.test", ["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.test"])[0]
            == 250
        )
        assert smtp.data(MESSAGE)[0] == 250
    [dsn] = wait_for_inbox(server, "alice@example.test", 1)
    assert b"Action: delivered" in dsn and b"Status: 2.0.0" in dsn
    assert b"Original-Envelope-Id: env+1" in dsn  # decoded from xtext
    assert b"Original-Recipient: rfc822; bob@example.test" in dsn
    assert b"text/rfc822-headers" in dsn and b"Hello." not in dsn  # RET=HDRS
