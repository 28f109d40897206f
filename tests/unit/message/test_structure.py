"""analyze(): the MIME tree of awkward messages; BODYSTRUCTURE, BODY and ENVELOPE values;
the cache serialisation (RFC 3501 §7.4.2, RFC 9051 §7.5.2, RFC 2045, RFC 2046)."""

from __future__ import annotations

import logging

import pytest

from mailwright.message import structure as structure_module
from mailwright.message.envelope import Address, Envelope
from mailwright.message.structure import (
    MAX_DEPTH,
    MAX_PARTS,
    Packed,
    Part,
    Structure,
    analyze,
    bodystructure,
    envelope,
)
from tests.unit.message.helpers_structure import RFC3501_EXAMPLE, multipart, part

SIMPLE = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"Cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello\r\nworld\r\n"
)


def test_rfc3501_envelope_example() -> None:
    # RFC 3501 §7.4.2's FETCH response example, field by field.
    s = analyze(SIMPLE)
    gray = [["Terry Gray", None, "gray", "cac.washington.edu"]]
    assert envelope(s) == [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev1 WG mtg summary and minutes",
        gray,
        gray,
        gray,
        [[None, None, "imap", "cac.washington.edu"]],
        [
            [None, None, "minutes", "CNRI.Reston.VA.US"],
            ["John Klensin", None, "KLENSIN", "MIT.EDU"],
        ],
        None,
        None,
        "<B27397-0100000@cac.washington.edu>",
    ]
    cc = envelope(s)[6]
    assert isinstance(cc, Packed) and cc.run == 2


def test_rfc3501_body_example() -> None:
    s = analyze(SIMPLE)
    assert bodystructure(s, extensible=False) == [
        "TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 14, 2,
    ]  # fmt: skip
    assert bodystructure(s) == [
        "TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 14, 2,
        None, None, None, None,
    ]  # fmt: skip
    body = s.body
    assert (body.type, body.subtype, body.size, body.lines) == ("text", "plain", 14, 2)
    assert body.mime_type == "text/plain"
    assert body.param("charset") == "US-ASCII" and body.param("name") is None


def test_sender_and_reply_to_default_to_from_but_not_when_present() -> None:
    raw = b"From: a@x.test\r\nSender: s@x.test\r\nReply-To:\r\n\r\n"
    env = envelope(analyze(raw))
    assert env[3] == [[None, None, "s", "x.test"]]
    assert env[4] == [[None, None, "a", "x.test"]]  # present but empty: from (RFC 3501)


def test_absent_headers_are_nil_and_first_duplicate_wins() -> None:
    raw = b"Subject: one\r\nSubject: two\r\nIn-Reply-To: <p@x>\r\n\r\nbody"
    env = envelope(analyze(raw))
    assert env == [None, "one", None, None, None, None, None, None, "<p@x>", None]


def test_multipart_with_extension_data() -> None:
    raw = multipart(
        "b1",
        part(
            b"hello",
            "Content-Type: text/plain; charset=utf-8; format=flowed",
            "Content-ID: <c1@x>",
            "Content-Description: the text",
            "Content-Transfer-Encoding: Quoted-Printable",
            "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
            "Content-Language: en",
            "Content-Location: http://x.test/a",
        ),
        part(
            b"AAAA",
            'Content-Type: image/png; name="a b.png"',
            'Content-Disposition: attachment; filename="a b.png"; size=3',
            "Content-Language: en, de (German)",
            "Content-Transfer-Encoding: base64",
        ),
        headers=("Content-Language: fr", "Content-Disposition: inline"),
    )
    s = analyze(raw)
    text = [
        "TEXT", "PLAIN", ["CHARSET", "utf-8", "FORMAT", "flowed"], "<c1@x>", "the text",
        "QUOTED-PRINTABLE", 5, 1,
    ]  # fmt: skip
    png = ["IMAGE", "PNG", ["NAME", "a b.png"], None, None, "BASE64", 4]
    assert bodystructure(s, extensible=False) == [text, png, "MIXED"]
    full = bodystructure(s)
    assert full == [
        [*text, "Q2hlY2sgSW50ZWdyaXR5IQ==", None, "en", "http://x.test/a"],
        [*png, None, ["ATTACHMENT", ["FILENAME", "a b.png", "SIZE", "3"]], ["en", "de"], None],
        "MIXED",
        ["BOUNDARY", "b1"],
        ["INLINE", None],
        "fr",
        None,
    ]
    assert isinstance(full, Packed) and full.run == 2


def test_rfc3501_section_example_tree() -> None:
    s = analyze(RFC3501_EXAMPLE)
    top = s.body
    assert [c.mime_type for c in top.children] == [
        "text/plain",
        "application/octet-stream",
        "message/rfc822",
        "multipart/mixed",
    ]
    three = top.children[2]
    assert three.message is not None
    assert three.message.envelope.subject == "three"
    assert [c.mime_type for c in three.message.body.children] == [
        "text/plain",
        "application/octet-stream",
    ]
    four_two = top.children[3].children[1]
    assert four_two.message is not None
    inner = four_two.message.body
    assert [c.mime_type for c in inner.children] == ["text/plain", "multipart/alternative"]
    assert [c.mime_type for c in inner.children[1].children] == ["text/plain", "text/richtext"]
    # The attached message's lines and envelope show in BODYSTRUCTURE.
    bs = bodystructure(s)
    msg3 = bs[2]
    assert isinstance(msg3, list)
    assert msg3[:7] == ["MESSAGE", "RFC822", None, None, None, "7BIT", three.size]
    assert isinstance(msg3[7], list) and msg3[7][1] == "three"
    assert msg3[9] == three.lines


def test_nested_offsets_partition_the_message() -> None:
    s = analyze(RFC3501_EXAMPLE)
    for p in s.body.walk():
        assert p.header_start <= p.body_start <= p.end <= len(RFC3501_EXAMPLE)
        last = p.body_start
        for c in p.children:
            assert last <= c.header_start
            last = c.end
        assert last <= p.end
        if p.message is not None:
            assert (p.message.body.header_start, p.message.body.end) == (p.body_start, p.end)


def test_missing_final_boundary_ends_last_part_at_end() -> None:
    raw = multipart("b", part(b"one", "Content-Type: text/plain"), part(b"two\r\n"), close=False)
    s = analyze(raw)
    assert len(s.body.children) == 2
    last = s.body.children[1]
    assert raw[last.body_start : last.end] == b"two\r\n\r\n"  # to the end, no delimiter
    assert last.end == len(raw)


def test_nested_missing_close_is_bounded_by_the_outer_delimiter() -> None:
    inner = multipart("in", part(b"a"), part(b"b"), close=False)
    raw = multipart("out", inner, part(b"c"))
    s = analyze(raw)
    first, second = s.body.children
    assert [raw[c.body_start : c.end] for c in first.children] == [b"a", b"b\r\n"]
    assert raw[second.body_start : second.end] == b"c"


def test_boundary_inside_quoted_parameter_is_not_the_boundary() -> None:
    raw = (
        b'Content-Type: multipart/mixed; x="; boundary=wrong"; boundary=right\r\n\r\n'
        b"--wrong\r\n\r\nno\r\n--right\r\n\r\nyes\r\n--right--\r\n"
    )
    s = analyze(raw)
    assert s.body.params == (("x", "; boundary=wrong"), ("boundary", "right"))
    (only,) = s.body.children
    assert raw[only.body_start : only.end] == b"yes"


def test_delimiter_must_start_a_line_and_not_continue() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\nx --b\r\n--bb\r\n--b-- not\r\n--b  \t\r\n\r\ny\r\n--b--"
    )
    s = analyze(raw)
    assert [raw[c.body_start : c.end] for c in s.body.children] == [
        b"x --b\r\n--bb\r\n--b-- not",
        b"y",
    ]


def test_preamble_epilogue_and_empty_parts() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n--b\r\n\r\n\r\n--b\r\n\r\n--b--\r\n--b\r\nafter close\r\n"
    )
    s = analyze(raw)
    a, b, c = s.body.children
    assert (a.header_start, a.body_start, a.end) == (a.header_start,) * 3  # nothing at all
    assert b.size == 0 and b.lines == 0
    assert b.body_start == b.header_start + 2  # an empty header: just the blank line
    # The line break before a delimiter is the delimiter's: this part is empty too.
    assert (c.header_start, c.body_start, c.end) == (c.header_start,) * 3


def test_bare_lf_message() -> None:
    raw = multipart(
        "b",
        part(b"line1\nline2\n", "Content-Type: text/plain", nl=b"\n"),
        part(b"x", "Content-Type: text/html", nl=b"\n"),
        headers=("Subject: lf",),
        nl=b"\n",
    )
    assert b"\r" not in raw
    s = analyze(raw)
    assert s.envelope.subject == "lf"
    plain, html = s.body.children
    assert raw[plain.body_start : plain.end] == b"line1\nline2\n"
    assert plain.lines == 2
    assert raw[html.body_start : html.end] == b"x"
    assert html.subtype == "html"


def test_header_ended_by_mixed_line_endings() -> None:
    s = analyze(b"Subject: a\r\nFrom: b@c\n\nbody\r\n\r\nmore")
    assert s.envelope.subject == "a"
    assert s.body.body_start == len(b"Subject: a\r\nFrom: b@c\n\n")


def test_utf8_and_8bit_headers() -> None:
    raw = (
        "From: Jörg Müller <jörg@bücher.example>\r\nSubject: Grüße\r\n".encode()
        + b"To: bad \xff\xfe <x@y>\r\n\r\n"
    )
    s = analyze(raw)
    assert s.envelope.subject == "Grüße"
    assert s.envelope.from_ == (Address("Jörg Müller", None, "jörg", "bücher.example"),)
    assert s.envelope.to == (Address("bad \ufffd\ufffd", None, "x", "y"),)


def test_encoded_words_stay_encoded_in_envelope() -> None:
    raw = b"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nFrom: =?iso-8859-1?q?J=F6rg?= <j@x>\r\n\r\n"
    env = envelope(analyze(raw))
    assert env[1] == "=?UTF-8?B?R3LDvMOfZQ==?="
    assert env[2] == [["=?iso-8859-1?q?J=F6rg?=", None, "j", "x"]]


def test_long_folded_lines_are_unfolded() -> None:
    subject = b"Subject: " + b"word " * 100 + b"\r\n\tcontinued\r\n   and more\r\n"
    s = analyze(subject + b"From: a@b\r\n\r\n")
    assert s.envelope.subject == ("word " * 100).rstrip() + " \tcontinued   and more"


def test_empty_input() -> None:
    s = analyze(b"")
    assert s.body == Part(0, 0, 0, params=(("charset", "us-ascii"),), lines=0)
    assert s.envelope == Envelope()
    assert bodystructure(s) == [
        "TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", 0, 0,
        None, None, None, None,
    ]  # fmt: skip


def test_no_headers_at_all() -> None:
    raw = b"Just a line of text\r\nand another\r\n"
    s = analyze(raw)
    assert (s.body.header_start, s.body.body_start, s.body.end) == (0, 0, len(raw))
    assert s.body.lines == 2


def test_junk_first_line_before_fields() -> None:
    raw = b"From alice@example.test Mon Jan  1 00:00:00 2024\r\nSubject: mbox\r\n\r\nbody"
    s = analyze(raw)
    assert s.envelope.subject == "mbox"
    assert s.body.size == 4


def test_part_without_header_or_blank_line() -> None:
    raw = multipart("b", b"just body text\r\nsecond line", part(b"x"))
    s = analyze(raw)
    first = s.body.children[0]
    assert first.header_start == first.body_start
    assert raw[first.body_start : first.end] == b"just body text\r\nsecond line"


def test_empty_header_then_body() -> None:
    for nl in (b"\r\n", b"\n"):
        s = analyze(nl + b"body")
        assert (s.body.body_start, s.body.size) == (len(nl), 4)


def test_header_only_message() -> None:
    raw = b"Subject: only a header\r\nFrom: a@b"
    s = analyze(raw)
    assert s.body.body_start == s.body.end == len(raw)
    assert s.envelope.subject == "only a header"


def test_header_line_without_colon_is_skipped() -> None:
    raw = b"Subject: s\r\nthis line has no colon\r\n continuation of junk\r\nFrom: a@b\r\n\r\nx"
    s = analyze(raw)
    assert s.envelope.subject == "s"
    assert s.envelope.from_ == (Address(None, None, "a", "b"),)
    assert s.body.size == 1


def test_obsolete_space_before_colon() -> None:
    s = analyze(b"Subject : spaced\r\nCONTENT-TYPE\t: Text/HTML\r\n\r\n")
    assert s.envelope.subject == "spaced"
    assert s.body.mime_type == "text/html"


def test_nul_and_bare_cr_in_header_values() -> None:
    s = analyze(b"Subject: a\x00b\rc\r\n\r\n")
    assert s.envelope.subject == "a\ufffdb c"


def test_content_type_defaults() -> None:
    assert analyze(b"Content-Type: garbage\r\n\r\n").body.params == (("charset", "us-ascii"),)
    assert analyze(b"Content-Type: text/\r\n\r\n").body.mime_type == "text/plain"
    s = analyze(b"Content-Type: image/gif\r\n\r\n")
    assert (s.body.mime_type, s.body.params, s.body.lines) == ("image/gif", (), None)
    assert bodystructure(s, extensible=False)[2] is None  # no parameters: NIL


def test_content_type_comments_and_odd_parameters() -> None:
    raw = (
        b'Content-Type: text/plain (a comment); charset="utf\\"8" ; junk; =x;'
        b' name = spaced value ; q="unterminated\r\n\r\n'
    )
    s = analyze(raw)
    assert s.body.mime_type == "text/plain"
    assert s.body.params == (("charset", 'utf"8'), ("name", "spaced value"), ("q", "unterminated"))


def test_comment_inside_quoted_parameter_is_kept() -> None:
    s = analyze(b'Content-Type: text/plain; name="a (b).txt" (comment)\r\n\r\n')
    assert s.body.params == (("name", "a (b).txt"),)


def test_disposition_without_type() -> None:
    s = analyze(b"Content-Type: text/plain\r\nContent-Disposition: ; filename=a\r\n\r\n")
    assert s.body.disposition is None
    assert s.body.disposition_params == (("filename", "a"),)
    assert bodystructure(s)[9] is None


def test_transfer_encoding_token() -> None:
    s = analyze(b"Content-Transfer-Encoding: (c) BASE64 junk\r\n\r\n")
    assert s.body.encoding == "base64"
    assert analyze(b"Content-Transfer-Encoding:\r\n\r\n").body.encoding is None


def test_multipart_without_boundary_has_one_implicit_part() -> None:
    raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n"
    s = analyze(raw)
    (only,) = s.body.children
    assert (only.header_start, only.body_start, only.end) == (s.body.body_start,) * 2 + (len(raw),)
    assert only.mime_type == "text/plain"


def test_multipart_without_any_delimiter() -> None:
    raw = b'Content-Type: multipart/alternative; boundary="zz"\r\n\r\nno delimiters\r\n'
    s = analyze(raw)
    assert len(s.body.children) == 1
    assert bodystructure(s, extensible=False)[-1] == "ALTERNATIVE"


def test_multipart_digest_default_is_message_rfc822() -> None:
    raw = multipart(
        "d",
        part(b"Subject: in digest\r\n\r\nhi"),
        part(b"plain", "Content-Type: text/plain"),
        subtype="digest",
    )
    s = analyze(raw)
    first, second = s.body.children
    assert first.mime_type == "message/rfc822"
    assert first.message is not None and first.message.envelope.subject == "in digest"
    assert second.mime_type == "text/plain"
    # A part whose Content-Type is invalid is text/plain even in a digest (RFC 2045 §5.2).
    bad = analyze(multipart("d", part(b"x", "Content-Type: nonsense"), subtype="digest"))
    assert bad.body.children[0].mime_type == "text/plain"


def test_message_rfc822_attachment() -> None:
    inner = b"From: Inner <in@x.test>\r\nSubject: inside\r\n\r\nline1\r\nline2\r\n"
    raw = multipart(
        "b",
        part(b"see attached"),
        part(inner, "Content-Type: message/rfc822; name=fwd.eml"),
    )
    s = analyze(raw)
    att = s.body.children[1]
    assert att.message is not None
    assert raw[att.body_start : att.end] == inner
    assert att.lines == 5
    bs = bodystructure(s)[1]
    assert isinstance(bs, list)
    assert bs[:7] == ["MESSAGE", "RFC822", ["NAME", "fwd.eml"], None, None, "7BIT", len(inner)]
    assert bs[7] == [
        None,
        "inside",
        [["Inner", None, "in", "x.test"]],
        [["Inner", None, "in", "x.test"]],
        [["Inner", None, "in", "x.test"]],
        None,
        None,
        None,
        None,
        None,
    ]
    assert bs[8] == [
        "TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", 14, 2,
        None, None, None, None,
    ]  # fmt: skip
    assert bs[9:] == [5, None, None, None, None]


def test_message_global_is_an_attached_message() -> None:
    raw = part("Subject: Grüße\r\n\r\nx".encode(), "Content-Type: message/global")
    s = analyze(raw)
    assert s.body.message is not None and s.body.message.envelope.subject == "Grüße"
    assert bodystructure(s, extensible=False)[:2] == ["MESSAGE", "GLOBAL"]


def test_encoded_message_rfc822_is_opaque() -> None:
    raw = part(
        b"U3ViamVjdDogeA0KDQp4", "Content-Type: message/rfc822", "Content-Transfer-Encoding: base64"
    )
    s = analyze(raw)
    assert s.body.mime_type == "application/octet-stream"
    assert s.body.message is None and s.body.lines is None


def _nested(depth: int) -> bytes:
    inner = part(b"leaf", "Content-Type: text/plain")
    for level in range(depth, 0, -1):
        inner = multipart(f"b{level}", inner)
    return b"Subject: deep\r\n" + inner


def test_nesting_is_capped() -> None:
    s = analyze(_nested(100))
    depth = 0
    p = s.body
    while p.children:
        depth += 1
        (p,) = p.children
    assert depth == MAX_DEPTH
    assert p.mime_type == "application/octet-stream"
    assert bodystructure(s)  # renders


def test_nested_messages_are_capped_too() -> None:
    raw = b"leaf"
    for _ in range(80):
        raw = b"Content-Type: message/rfc822\r\n\r\n" + raw
    s = analyze(raw)
    depth = 0
    p = s.body
    while p.message is not None:
        depth += 1
        p = p.message.body
    assert depth == MAX_DEPTH
    assert p.mime_type == "application/octet-stream"


def test_part_count_is_capped() -> None:
    n = MAX_PARTS + 500
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\n\r\nx\r\n" * n
        + b"--b--\r\n"
    )
    s = analyze(raw)
    children = s.body.children
    assert len(children) == MAX_PARTS
    assert all(raw[c.body_start : c.end] == b"x" for c in children[:-1])
    last = children[-1]
    assert last.end == len(raw)  # the rest, delimiters and all
    assert raw[last.body_start : last.end].count(b"--b\r\n") == n - MAX_PARTS


def test_part_budget_makes_later_structure_opaque() -> None:
    many = multipart("m", *[part(b"x")] * (MAX_PARTS - 2))  # with the outer two: all of it
    raw = multipart("o", many, part(b"Subject: late\r\n\r\nx", "Content-Type: message/rfc822"))
    s = analyze(raw)
    first, late = s.body.children
    assert len(first.children) == MAX_PARTS - 2
    assert late.mime_type == "application/octet-stream" and late.message is None
    assert sum(1 for _ in s.body.walk()) == MAX_PARTS + 1  # the budget counts below the root


def test_text_line_counts() -> None:
    assert analyze(b"\r\nno newline").body.lines == 1
    assert analyze(b"\r\none\r\n\r\n").body.lines == 2
    assert analyze(b"\r\n").body.lines == 0


def test_walk_visits_attached_messages() -> None:
    s = analyze(RFC3501_EXAMPLE)
    assert len(list(s.body.walk())) == 15


# --- serialisation ---


def test_round_trip() -> None:
    for raw in (SIMPLE, RFC3501_EXAMPLE, b"", _nested(60)):
        s = analyze(raw)
        data = s.to_bytes()
        assert Structure.from_bytes(data) == s
        assert data.startswith(b"[1,")


def test_round_trip_keeps_unicode_and_groups() -> None:
    raw = "To: Grp: Ä <ä@x>;\r\nSubject: ü\r\nContent-Disposition: inline; a=b\r\n\r\n".encode()
    s = analyze(raw)
    assert Structure.from_bytes(s.to_bytes()) == s


ENV = "[null,null,[],[],[],[],[],[],null,null]"
PART = '[0,0,0,"text","plain",[],null,null,null,null,null,null,[],[],null,[],null]'


def _doc(env: str = ENV, part_: str = PART, refs: str = "null") -> bytes:
    return f"[1, [{env}, {part_}, {refs}]]".encode()


def test_from_bytes_minimal_document() -> None:
    assert Structure.from_bytes(_doc()) == Structure(Envelope(), Part(0, 0, 0))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"{}",
        b"[2, []]",
        b"[1]",
        b"[1, 5]",
        b"[1, [[], [], null]]",
        _doc(refs="7"),
        _doc(env=ENV.replace("null,null]", "null,1]")),
        _doc(env=ENV.replace("[],[],[],[],[],[]", '[["n",null,"m",5]],[],[],[],[],[]')),
        _doc(env=ENV.replace("[],[],[],[],[],[]", '[["n",null,"m"]],[],[],[],[],[]')),
        _doc(part_=PART.replace("[0,0,0,", '["0",0,0,')),
        _doc(part_=PART.replace('"text"', "1")),
        _doc(part_=PART.replace('"plain",[],null', '"plain",[],3')),
        _doc(part_=PART.replace('"plain",[],', '"plain",[["a",1]],')),
        _doc(part_=PART.replace('"plain",[],', '"plain",[["a"]],')),
        _doc(
            part_=PART.replace(
                "null,null,null,null,null,null,[]", 'null,null,null,"x",null,null,[]'
            )
        ),
        _doc(part_=PART.replace("[],[],null,[],null]", "[],[1],null,[],null]")),
        _doc(part_=PART.replace("[],null]", "[7],null]")),
        _doc(part_=PART.replace("[],null]", "[],5]")),
    ],
)
def test_from_bytes_rejects_malformed_data(data: bytes) -> None:
    with pytest.raises(ValueError):
        Structure.from_bytes(data)


def test_analyze_never_raises_even_on_a_bug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> Structure:
        raise RuntimeError("bug")

    monkeypatch.setattr(structure_module, "_message", broken)
    with caplog.at_level(logging.ERROR):
        s = analyze(b"Subject: x\r\n\r\nbody")
    assert s.body == Part(0, 0, 18, type="application", subtype="octet-stream")
    assert "structure.failed" in caplog.text
