"""mailwright.message.envelope: RFC 5322 §3.4 address lists as RFC 3501 §7.4.2 wants them,
RFC 2047 encoded words, header field iteration."""

from __future__ import annotations

import pytest

from mailwright.message.envelope import (
    GROUP_END,
    Address,
    Envelope,
    decode_charset,
    decode_words,
    field_text,
    iter_fields,
    parse_addresses,
)


def A(name: str | None, mailbox: str | None, host: str | None, adl: str | None = None) -> Address:
    return Address(name, adl, mailbox, host)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@b.test", [A(None, "a", "b.test")]),
        (
            "Joe Q. Public <john.q.public@example.com>",
            [A("Joe Q. Public", "john.q.public", "example.com")],
        ),
        ('"Joe Q. Public" <john@x>', [A("Joe Q. Public", "john", "x")]),
        ('"" <a@b>', [A(None, "a", "b")]),
        ("<a@b>, c@d ,, e@f,", [A(None, "a", "b"), A(None, "c", "d"), A(None, "e", "f")]),
        (
            '"Smith, John" <js@x>, "Q \\"q\\" Z" <q@x>',
            [A("Smith, John", "js", "x"), A('Q "q" Z', "q", "x")],
        ),
        ("  Mary   Smith\t<mary@x>  ", [A("Mary Smith", "mary", "x")]),
        # Quoted local parts: kept quoted when they must be, unquoted when they need not be.
        ('"john smith"@example.com', [A(None, '"john smith"', "example.com")]),
        ('"john"@example.com', [A(None, "john", "example.com")]),
        ('Name <"a\\"b c"@x>', [A("Name", '"a\\"b c"', "x")]),
        ('"a\\\\b"@x', [A(None, '"a\\\\b"', "x")]),
        # The old comment form names the address.
        ("gray@cac.washington.edu (Terry Gray)", [A("Terry Gray", "gray", "cac.washington.edu")]),
        ("(Terry (the) \\) Gray) gray@x", [A("Terry (the) ) Gray", "gray", "x")]),
        ("Real <r@x> (ignored)", [A("Real", "r", "x")]),
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            [A("Pete", "pete", "silly.test")],
        ),
        # obs-route (RFC 5322 §4.4).
        ("<@a.test,@b.test:u@h>", [A(None, "u", "h", adl="@a.test,@b.test")]),
        ("Routed <@a.test:u@h>", [A("Routed", "u", "h", adl="@a.test")]),
        # Groups (RFC 3501 §7.4.2 markers).
        ("undisclosed-recipients:;", [A(None, "undisclosed-recipients", None), GROUP_END]),
        (
            "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, x@y",
            [
                A(None, "A Group", None),
                A("Ed Jones", "c", "a.test"),
                A(None, "joe", "where.test"),
                A("John", "jdoe", "one.test"),
                GROUP_END,
                A(None, "x", "y"),
            ],
        ),
        ("Open: a@b", [A(None, "Open", None), A(None, "a", "b"), GROUP_END]),
        (
            "G: a@b, Inner: c@d;",
            [
                A(None, "G", None),
                A(None, "a", "b"),
                A(None, "Inner", ""),
                A(None, "c", "d"),
                GROUP_END,
            ],
        ),
        (": a@b;", [A(None, "a", "b")]),
        # Malformed, handled leniently.
        ("Undisclosed recipients", [A(None, "Undisclosed recipients", "")]),
        ("<>", [A(None, "", "")]),
        ("Name <>", [A("Name", "", "")]),
        ("<postmaster>", [A(None, "postmaster", "")]),
        ("John Smith john@x", [A("John Smith", "john", "x")]),
        ("@host", [A(None, "", "host")]),
        ("u@[192.0.2.1]", [A(None, "u", "[192.0.2.1]")]),
        ("u@[unterminated", [A(None, "u", "[unterminated")]),
        ("Name <a@b", [A("Name", "a", "b")]),
        ("<a@b; c@d", [A(None, "a", "b"), A(None, "c", "d")]),
        ("a@b>x@y", [A(None, "a", "b"), A(None, "x", "y")]),
        ("(just a comment)", []),
        ("", []),
        ("   ", []),
        ("Jörg <jörg@bücher.example>", [A("Jörg", "jörg", "bücher.example")]),
        ("=?utf-8?q?J=C3=B6rg?= <j@x>", [A("=?utf-8?q?J=C3=B6rg?=", "j", "x")]),
        ('"=?utf-8?q?J=C3=B6rg?=" <j@x>', [A("=?utf-8?q?J=C3=B6rg?=", "j", "x")]),
    ],
)
def test_parse_addresses(text: str, expected: list[Address]) -> None:
    assert list(parse_addresses(text)) == expected


def test_unterminated_quote_and_comment_do_not_raise() -> None:
    assert parse_addresses('"abc <a@b>') == (A(None, "abc <a@b>", ""),)
    assert parse_addresses("a@b (unterminated") == (A("unterminated", "a", "b"),)
    assert parse_addresses('"trailing backslash\\') == (A(None, "trailing backslash\\", ""),)


def test_group_markers() -> None:
    start, end = parse_addresses("g:;")
    assert start.is_group_start and not start.is_group_end
    assert end.is_group_end and not end.is_group_start
    plain = A(None, "a", "")
    assert not plain.is_group_start and not plain.is_group_end


def test_envelope_addresses_defaults() -> None:
    frm = (A(None, "f", "x"),)
    env = Envelope(
        from_=frm, to=(A(None, "t", "x"),), cc=(A(None, "c", "x"),), bcc=(A(None, "b", "x"),)
    )
    assert env.addresses("FROM") == frm
    assert env.addresses("sender") == frm
    assert env.addresses("reply-to") == env.addresses("reply_to") == frm
    assert env.addresses("to")[0].mailbox == "t"
    assert env.addresses("cc")[0].mailbox == "c"
    assert env.addresses("bcc")[0].mailbox == "b"
    assert env.addresses("x-other") == ()
    own = Envelope(from_=frm, sender=(A(None, "s", "x"),), reply_to=(A(None, "r", "x"),))
    assert own.addresses("sender")[0].mailbox == "s"
    assert own.addresses("reply-to")[0].mailbox == "r"


# --- encoded words ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("=?utf-8?q?caf=C3=A9?=", "café"),
        ("=?UTF-8?B?Y2Fmw6k=?=", "café"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # RFC 2047 §6.2: white space between is dropped
        ("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "é"),  # a character split across words
        ("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", "éé"),
        ("a =?utf-8?q?b?= c", "a b c"),
        ("=?utf-8?q?hello_world?=", "hello world"),
        ("=?utf-8*en?q?lang?=", "lang"),  # RFC 2231 §5 language suffix
        ("=?x-unknown-charset?q?=C3=A9?=", "é"),
        ("=?base64?q?abc?=", "abc"),  # not a text codec: read as UTF-8
        ("=?idna?q?xn--?=", "xn--"),  # a codec without error handlers
        ("=?utf-8?b?!!Y2Fm*w6k?=", "café"),
        ("=?utf-8?q?bad=ZZ?=", "bad=ZZ"),
        ("=? not a word ?=", "=? not a word ?="),
        ("=?utf-8?x?nope?=", "=?utf-8?x?nope?="),
        ("=?utf-8?q??=", ""),
        ("x=?utf-8?q?y?=z", "xyz"),
    ],
)
def test_decode_words(text: str, expected: str) -> None:
    assert decode_words(text) == expected


def test_decode_charset() -> None:
    assert decode_charset(b"\xe9", "ISO-8859-1") == "é"
    assert decode_charset(b"\xe9", '"windows-1252"') == "é"
    assert decode_charset(b"\xc3\xa9", None) == "é"
    assert decode_charset(b"\xff", "us-ascii") == "\ufffd"
    assert decode_charset(b"\xc3\xa9", "no-such-charset") == "é"


# --- header fields ---


def test_field_text() -> None:
    assert field_text(b" value\r\n\tfolded\r") == "value\tfolded"
    assert field_text(b" bare\ncont\n") == "barecont"
    assert field_text(b" a\rb\x00c ") == "a b\ufffdc"
    assert field_text(b"\xff") == "\ufffd"


def test_iter_fields() -> None:
    raw = b" leading continuation\r\nA: 1\r\n folded\r\njunk\r\nB :2\r\n\r\nC: body"
    got = [(n, raw[fs:fe], raw[vs:fe]) for n, fs, vs, fe in iter_fields(raw, 0, len(raw))]
    assert got == [
        (b"", b" leading continuation\r\n", b" leading continuation\r\n"),
        (b"a", b"A: 1\r\n folded\r\n", b" 1\r\n folded\r\n"),
        (b"", b"junk\r\n", b"junk\r\n"),
        (b"b", b"B :2\r\n", b"2\r\n"),
    ]
    assert iter_fields(raw, 0, 0) == []
    assert iter_fields(b"\nX: y", 0, 5) == []
    assert [f[0] for f in iter_fields(b"X: y", 0, 4)] == [b"x"]
