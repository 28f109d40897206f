"""Python's smtplib against a running server: plain, STARTTLS, several recipients, UTF-8."""

from __future__ import annotations

import smtplib
import ssl
import warnings

import pytest

from tests.integration.server import Server

MESSAGE = (
    b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello there.\r\n"
)


def test_smtplib_plain_delivery(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        code, _ = smtp.ehlo("client.test")
        assert code == 250
        for ext in (
            "pipelining",
            "size",
            "8bitmime",
            "enhancedstatuscodes",
            "smtputf8",
            "chunking",
            "starttls",
        ):
            assert smtp.has_extn(ext), ext
        assert smtp.esmtp_features["size"] == str(25 * 1024 * 1024)
        refused = smtp.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
        assert refused == {}
    [stored] = server.inbox("alice@example.test")
    assert stored.startswith(
        b"Return-Path: <sender@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n"
    )
    assert stored.endswith(MESSAGE)
    assert b"for <alice@example.test>;" in stored


def test_starttls_verified_with_the_dev_certificate(server: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(server.cert))
    ctx.check_hostname = False  # the dev certificate names mx.example.test and localhost
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=ctx)
        sock = smtp.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")  # not offered twice
        smtp.sendmail("sender@remote.test", ["alice@example.test"], MESSAGE)
    [stored] = server.inbox("alice@example.test")
    assert b"with ESMTPS" in stored
    assert b"(using TLSv1." in stored


def test_tls_1_1_is_refused(server: Server) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            smtp.starttls(context=ctx)
    # and the server is still serving
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        assert smtp.noop()[0] == 250


def test_one_stored_copy_for_several_recipients(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        refused = smtp.sendmail(
            "sender@remote.test",
            [
                "alice@example.test",
                "bob@example.test",
                "alice+news@example.test",
                "nobody@example.test",
            ],
            MESSAGE,
        )
    assert set(refused) == {"nobody@example.test"}
    assert refused["nobody@example.test"][0] == 550
    assert len(server.inbox("alice@example.test")) == 1  # alice and alice+news: one copy
    assert len(server.inbox("bob@example.test")) == 1
    with server.db() as db:
        assert db.execute("SELECT count(*), max(refcount) FROM messages").fetchone() == (1, 2)


def test_smtputf8_and_8bitmime(server: Server) -> None:
    body = "From: Jörg <jörg@remote.test>\r\nSubject: grüße\r\n\r\nÄpfel und Birnen\r\n".encode()
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        refused = smtp.sendmail(
            "jörg@remote.test",
            ["alice@example.test"],
            body,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
        assert refused == {}
    [stored] = server.inbox("alice@example.test")
    assert stored.endswith(body)
    assert b"with UTF8SMTP" in stored


def test_relay_is_refused(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@remote.test")
        for rcpt in ("victim@foreign.test", "<@example.test:victim@foreign.test>"):
            code, text = smtp.rcpt(rcpt)
            assert (code, text[:5]) == (550, b"5.7.1"), rcpt
        code, _ = smtp.rcpt('"victim@foreign.test"@example.test')
        assert code == 550
        code, _ = smtp.rcpt("victim%foreign.test@example.test")
        assert code == 550
    with server.db() as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_large_message_is_stored_byte_exact(server: Server) -> None:
    line = b"x" * 76 + b"\r\n"
    long_line = b"y" * 5000 + b"\r\n"  # over 998: stored intact, never truncated
    body = b"Subject: big\r\n\r\n" + line * 40000 + long_line + b".starts with a dot\r\n"
    with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
        smtp.sendmail("sender@remote.test", ["alice@example.test"], body)
    [stored] = server.inbox("alice@example.test")
    assert stored.endswith(body)


def test_bare_postmaster_is_accepted(server: Server) -> None:
    """RFC 5321 §4.5.1: RCPT TO:<Postmaster> without a domain must be accepted."""
    from tests.integration.server import mailwright

    mailwright("alias", "add", "postmaster@example.test", "bob@example.test", config=server.config)
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@remote.test")
        assert smtp.rcpt("<Postmaster>")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
    assert len(server.inbox("bob@example.test")) == 1
