"""Trace headers: Return-Path and Received (RFC 5321 §4.4), "with" keywords (RFC 3848)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailwright.message.trace import protocol_name, received, return_path

WHEN = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_return_path() -> None:
    assert return_path("alice@example.test") == b"Return-Path: <alice@example.test>\r\n"


def test_null_return_path() -> None:
    # RFC 5321 §4.4: a bounce has the null reverse-path "<>".
    assert return_path(None) == b"Return-Path: <>\r\n"
    assert return_path("") == b"Return-Path: <>\r\n"


def test_return_path_utf8() -> None:
    assert return_path("jürgen@bücher.test") == "Return-Path: <jürgen@bücher.test>\r\n".encode()


def test_received_with_recipient() -> None:
    got = received(
        helo="client.example",
        peer_ip="192.0.2.7",
        by="mx.example.test",
        protocol="ESMTPS",
        queue_id="4ABCDEFGHJKLMN",
        recipient="alice@example.test",
        when=WHEN,
    )
    assert got == (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.example.test (mailwright) with ESMTPS id 4ABCDEFGHJKLMN\r\n"
        b"\tfor <alice@example.test>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    )


def test_received_without_recipient_puts_the_date_on_the_by_line() -> None:
    got = received(
        helo="c", peer_ip="2001:db8::1", by="mx", protocol="SMTP", queue_id="Q", recipient=None,
        when=WHEN,
    )  # fmt: skip
    assert got == (
        b"Received: from c ([2001:db8::1])\r\n"
        b"\tby mx (mailwright) with SMTP id Q; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    )


def test_received_with_tls_comment() -> None:
    got = received(
        helo="c", peer_ip="192.0.2.1", by="mx", protocol="ESMTPS", queue_id="Q",
        recipient="a@b.test", when=WHEN, tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
    )  # fmt: skip
    lines = got.split(b"\r\n")
    assert lines[1] == b"\tby mx (mailwright) with ESMTPS id Q"
    assert lines[2] == b"\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)"
    assert lines[3].startswith(b"\tfor <a@b.test>; ")


def test_received_keeps_the_time_zone() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    got = received(
        helo="c", peer_ip="192.0.2.1", by="mx", protocol="ESMTP", queue_id="Q", recipient=None,
        when=when,
    )  # fmt: skip
    assert got.endswith(b"; Tue, 02 Jan 2024 03:04:05 -0500\r\n")


def test_received_defaults_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    got = received(helo="c", peer_ip="192.0.2.1", by="mx", protocol="ESMTP", queue_id="Q",
                   recipient=None)  # fmt: skip
    msg = email.message_from_bytes(got + b"\r\n", policy=email.policy.default)
    stamp = email.utils.parsedate_to_datetime(str(msg["Received"]).rsplit(";", 1)[1])
    assert before <= stamp <= datetime.now(UTC)


@pytest.mark.parametrize(
    "evil",
    ["evil\r\nX-Injected: 1", "evil\nX-Injected: 1", "evil\rX", "evil\0", "evil (comment)"],
)
def test_untrusted_text_can_never_split_the_header(evil: str) -> None:
    got = received(
        helo=evil, peer_ip=evil, by="mx", protocol="ESMTP", queue_id="Q", recipient=evil,
        when=WHEN, tls=evil,
    )  # fmt: skip
    lines = got.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[0].startswith(b"Received: ")
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    assert b"\n" not in got.replace(b"\r\n", b"") and b"\r" not in got.replace(b"\r\n", b"")
    assert b"\0" not in got
    msg = email.message_from_bytes(got + b"\r\nbody", policy=email.policy.compat32)
    assert list(msg.keys()) == ["Received"]
    assert b"(comment)" not in got
    assert return_path(evil).count(b"\r\n") == 1


def test_received_is_a_parseable_header() -> None:
    got = received(
        helo="client.example", peer_ip="192.0.2.7", by="mx.example.test", protocol="UTF8SMTPSA",
        queue_id="Q", recipient="jürgen@example.test", when=WHEN, tls="TLSv1.3",
    )  # fmt: skip
    msg = email.message_from_bytes(return_path("a@b.test") + got + b"\r\nbody\r\n")
    assert list(msg.keys()) == ["Return-Path", "Received"]
    assert str(msg["Received"]).endswith("+0000")


@pytest.mark.parametrize(
    ("esmtp", "tls", "auth", "utf8", "expected"),
    [
        (False, False, False, False, "SMTP"),
        (False, True, True, True, "SMTP"),  # HELO has no extensions to speak of
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, False, "ESMTPSA"),
        (True, False, False, True, "UTF8SMTP"),
        (True, True, False, True, "UTF8SMTPS"),
        (True, False, True, True, "UTF8SMTPA"),
        (True, True, True, True, "UTF8SMTPSA"),
    ],
)
def test_protocol_name(esmtp: bool, tls: bool, auth: bool, utf8: bool, expected: str) -> None:
    assert protocol_name(esmtp=esmtp, tls=tls, auth=auth, utf8=utf8) == expected
