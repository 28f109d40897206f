"""mailwright.message.search: decoded text for SEARCH (RFC 9051 §6.4.4) and its matching."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailwright.message.search import (
    address_text,
    body_text,
    contains,
    fold,
    header_text,
    header_values,
    html_text,
    part_text,
    sent_date,
)
from mailwright.message.structure import analyze
from tests.unit.message.helpers_structure import multipart, part


def test_contains_is_case_insensitive_unicode() -> None:
    assert contains("Straße in KÖLN", "STRASSE in köln")
    assert contains("anything", "")
    assert not contains("abc", "abd")
    assert fold("ΣΑΣ") == fold("σας")


def test_header_values_decoded_unfolded_all_occurrences() -> None:
    raw = (
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n  folded\r\nX-Tag: one\r\nx-tag: =?iso-8859-1?q?t=E9?=\r\n"
        b"\r\nX-Tag: in body\r\n"
    )
    s = analyze(raw)
    assert header_values(raw, s, "subject") == ["café  folded"]
    assert header_values(raw, s, "X-TAG") == ["one", "té"]
    assert header_values(raw, s, "missing") == []


def test_header_text() -> None:
    raw = b"Subject: =?utf-8?q?caf=C3=A9?=\r\nno colon here\r\nTo: a@b\r\n\r\nbody"
    s = analyze(raw)
    assert header_text(raw, s) == "Subject: café\nno colon here\nTo: a@b"


def test_address_text() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n"
        b"To: Team: a@x, B <b@x>;, <c@x>\r\n"
        b"Cc: nohost\r\n\r\n"
    )
    s = analyze(raw)
    assert address_text(s, "from") == "Jörg <j@x.test>"
    assert address_text(s, "reply-to") == "Jörg <j@x.test>"  # defaults to From
    assert address_text(s, "to") == "Team:, a@x, B <b@x>, ;, c@x"
    assert address_text(s, "cc") == "nohost"
    assert address_text(s, "bcc") == ""
    assert contains(address_text(s, "from"), "jörg")


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (
            "Tue, 1 Jul 2003 10:52:37 +0200",
            datetime(2003, 7, 1, 10, 52, 37, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("1 Jul 2003 10:52:37 -0000", datetime(2003, 7, 1, 10, 52, 37, tzinfo=UTC)),
        ("not a date", None),
        ("Mon, 1 Jan 99999 00:00:00 +0000", None),
    ],
)
def test_sent_date(date: str, expected: datetime | None) -> None:
    s = analyze(f"Date: {date}\r\n\r\n".encode())
    assert sent_date(s) == expected


def test_sent_date_absent() -> None:
    assert sent_date(analyze(b"Subject: x\r\n\r\n")) is None
    assert sent_date(analyze(b"Date:\r\n\r\n")) is None


def _message() -> bytes:
    inner = b"Subject: inner\r\n\r\ninner words\r\n"
    return multipart(
        "b",
        multipart(
            "alt",
            part(
                b"caf=C3=A9 au lait=\r\n, s'il vous pla=C3=AEt\r\n",
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
            ),
            part(
                base64.b64encode(
                    b"<p>Hello <b>bold</b>&amp;more</p><script>var x='secret';</script>"
                ),
                "Content-Type: text/html",
                "Content-Transfer-Encoding: base64",
            ),
            subtype="alternative",
        ),
        part(b"\xe9t\xe9", "Content-Type: text/plain; charset=iso-8859-1"),
        part(
            b"QUJD", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64"
        ),
        part(inner, "Content-Type: message/rfc822"),
        part(b"begin 644 raw", "Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode"),
    )


def test_body_text_decodes_every_text_part() -> None:
    raw = _message()
    text = body_text(raw, analyze(raw))
    assert text.split("\n") == [
        "café au lait, s'il vous plaît",
        "",
        " Hello bold&more ",
        "été",
        "inner words",
        "",
        "begin 644 raw",
    ]
    assert "secret" not in text and "ABC" not in text and "inner\n" not in text


def test_body_text_is_bounded() -> None:
    big = b"x" * 5000
    raw = multipart("b", part(big), part(b"second part"))
    s = analyze(raw)
    assert body_text(raw, s, limit=100) == "x" * 100
    text = body_text(raw, s, limit=5020)
    assert text == "x" * 5000 + "\nsecond part"[:20]
    assert body_text(raw, s, limit=5001) == "x" * 5000  # no room left for another part


def test_part_text_bounds_the_encoded_input() -> None:
    data = base64.encodebytes(b"y" * 10000).replace(b"\n", b"\r\n")
    raw = part(data, "Content-Type: text/plain", "Content-Transfer-Encoding: base64")
    s = analyze(raw)
    assert part_text(raw, s.body, limit=10) == "y" * 10


def test_html_text() -> None:
    assert html_text("a<br>b<span>c</span>d") == "a bcd"
    assert html_text("x<style>p{}</style>y<SCRIPT>1</SCRIPT >z") == "xyz"
    assert html_text("before<script>never closed") == "before"
    assert html_text("<script>a</script") == ""
    assert html_text("1 &lt; 2 <<<") == "1 < 2 <<<"
