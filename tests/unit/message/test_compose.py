"""compose(): MIME trees (RFC 2046 §5.1, RFC 2387), transfer encodings (RFC 2045 §6), header
encoding and folding (RFC 2047, RFC 5322 §2.2.3, RFC 6532), and the checks that refuse a draft,
each naming its field. Output is read back with the stdlib parser."""

from __future__ import annotations

import base64
import re
import time
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.message.compose import (
    PROTECTED_HEADERS,
    PROTECTED_PREFIXES,
    Attachment,
    ComposeError,
    Draft,
    check_header,
    compose,
    needs_smtputf8,
    parse_mailbox,
)

SENDER = "Ann Example <ann@example.test>"
PNG = bytes(range(256)) * 3
PDF = b"%PDF-1.7\r\n" + bytes(range(256)) * 20


def build(**kwargs: object) -> bytes:
    fields: dict[str, object] = {"sender": SENDER, "to": ("bob@example.test",)}
    fields.update(kwargs)
    return compose(Draft(**fields), hostname="mx.example.test", queue_id="Q1")  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def head(raw: bytes) -> bytes:
    """The top-level header block, unfolded lines kept as they are."""
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def field_lines(raw: bytes, name: bytes) -> list[bytes]:
    """The physical lines of one top-level field (its first line and continuations)."""
    lines = head(raw).split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


def field_names(raw: bytes) -> list[str]:
    return [
        line.split(b":", 1)[0].decode()
        for line in head(raw).split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def assert_wire(raw: bytes) -> None:
    """RFC 5322 §2.1.1 and §2.3: CRLF lines of at most 998 octets, no bare CR or LF."""
    assert raw.endswith(b"\r\n")
    for line in raw[:-2].split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998


def crlf(text: str) -> str:
    """What a text part decodes back to: CRLF line ends and a final line end."""
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    return text if not text or text.endswith("\r\n") else text + "\r\n"


def tree(part: EmailMessage) -> object:
    if part.is_multipart():
        return (part.get_content_type(), [tree(p) for p in part.iter_parts()])  # type: ignore[arg-type]
    return part.get_content_type()


def leaves(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if not p.is_multipart()]


def unescape(text: str) -> str:
    """Python's address parser leaves RFC 6532 raw UTF-8 surrogate-escaped."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8")


# --- structures -------------------------------------------------------------------------------


def test_text_only_is_text_plain_7bit() -> None:
    raw = build(text="Hello Bob,\nsee you.\n")
    assert_wire(raw)
    message = parse(raw)
    assert tree(message) == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message.get_content() == "Hello Bob,\r\nsee you.\r\n"
    assert raw.count(b"MIME-Version:") == 1


def test_html_only_is_text_html() -> None:
    raw = build(html="<p>Hello</p>")
    message = parse(raw)
    assert tree(message) == "text/html"
    assert message.get_content() == "<p>Hello</p>\r\n"


def test_text_and_html_are_alternatives_text_first() -> None:
    message = parse(build(text="plain", html="<b>rich</b>"))
    assert tree(message) == ("multipart/alternative", ["text/plain", "text/html"])
    text, html = leaves(message)
    assert text.get_content() == "plain\r\n"
    assert html.get_content() == "<b>rich</b>\r\n"


def test_inline_image_is_related_to_the_html() -> None:
    logo = Attachment("logo.png", PNG, "image/png", inline=True, content_id="logo@example.test")
    message = parse(build(html='<img src="cid:logo@example.test">', attachments=(logo,)))
    assert tree(message) == ("multipart/related", ["text/html", "image/png"])
    assert message.get_param("type") == "text/html"  # RFC 2387 §3.1
    html, image = leaves(message)
    assert html.get_content() == '<img src="cid:logo@example.test">\r\n'
    assert image["Content-ID"] == "<logo@example.test>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_content() == PNG


def test_full_tree() -> None:
    logo = Attachment("logo.png", PNG, "image/png", inline=True, content_id="logo")
    pdf = Attachment("report.pdf", PDF, "application/pdf")
    raw = build(text="see the report", html='<img src="cid:logo">', attachments=(logo, pdf))
    assert_wire(raw)
    message = parse(raw)
    assert tree(message) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/pdf",
        ],
    )
    text, html, image, document = leaves(message)
    assert text.get_content() == "see the report\r\n"
    assert html.get_content() == '<img src="cid:logo">\r\n'
    assert image.get_content() == PNG
    assert image["Content-ID"] == "<logo>"
    assert document.get_content_disposition() == "attachment"
    assert document.get_filename() == "report.pdf"
    assert document["Content-ID"] is None
    assert document.get_content() == PDF


def test_attachment_is_base64_in_76_character_lines() -> None:
    raw = build(text="x", attachments=(Attachment("data.bin", PDF),))
    message = parse(raw)
    assert tree(message) == ("multipart/mixed", ["text/plain", "application/octet-stream"])
    part = leaves(message)[1]
    assert part["Content-Transfer-Encoding"] == "base64"
    body = raw.split(b'filename="data.bin"\r\n\r\n', 1)[1].split(b"\r\n\r\n--", 1)[0]
    lines = body.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert base64.b64decode(b"".join(lines)) == PDF


def test_attachments_only() -> None:
    message = parse(build(attachments=(Attachment("a.txt", b"abc", "text/plain"),)))
    assert tree(message) == ("multipart/mixed", ["text/plain"])
    (part,) = leaves(message)
    assert part.get_content_disposition() == "attachment"
    assert part.get_payload(decode=True) == b"abc"


def test_inline_without_content_id_or_html_goes_to_mixed() -> None:
    badge = Attachment("badge.png", PNG, "image/png", inline=True)
    logo = Attachment("logo.png", PNG, "image/png", inline=True, content_id="logo")
    message = parse(build(text="no html here", attachments=(badge, logo)))
    assert tree(message) == ("multipart/mixed", ["text/plain", "image/png", "image/png"])
    _, first, second = leaves(message)
    assert first.get_content_disposition() == "inline" and first["Content-ID"] is None
    assert second.get_content_disposition() == "inline" and second["Content-ID"] == "<logo>"


def test_attachment_with_content_id_but_not_inline_stays_an_attachment() -> None:
    logo = Attachment("logo.png", PNG, "image/png", content_id="logo")
    message = parse(build(html="<p>x</p>", attachments=(logo,)))
    assert tree(message) == ("multipart/mixed", ["text/html", "image/png"])
    assert leaves(message)[1].get_content_disposition() == "attachment"


@pytest.mark.parametrize(
    "filename",
    [
        "résumé.pdf",
        "日本語のファイル名" * 10 + ".pdf",
        'quote " and (parens) [brackets].txt',
        "semi;colon=equals.txt",
        "x" * 255,
    ],
)
def test_filenames_round_trip(filename: str) -> None:
    raw = build(text="x", attachments=(Attachment(filename, b"data"),))
    assert_wire(raw)
    assert raw.isascii()  # RFC 2231 for anything non-ASCII
    part = leaves(parse(raw))[1]
    assert part.get_filename() == filename
    if not filename.isascii():
        assert b"filename*" in raw


def test_content_type_is_lower_cased() -> None:
    message = parse(build(text="x", attachments=(Attachment("a.png", b"x", "Image/PNG"),)))
    assert leaves(message)[1].get_content_type() == "image/png"


def test_boundary_never_appears_in_the_content() -> None:
    # Lines that look like the generator's delimiters: it must pick others.
    text = "\n".join(f"--==============={n:019d}==" for n in range(50)) + "\n--x--\n"
    message = parse(build(text=text, html=text, attachments=(Attachment("t.txt", text.encode()),)))
    text_part, html_part, attached = leaves(message)
    assert text_part.get_content() == crlf(text)
    assert html_part.get_content() == crlf(text)
    assert attached.get_payload(decode=True) == text.encode()


# --- text transfer encoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ("plain ascii\nlines\n", "7bit"),
        ("x" * 998, "7bit"),
        ("x" * 999, "quoted-printable"),
        ("caf\u00e9 cr\u00e8me", "quoted-printable"),
        ("nul\x00inside", "quoted-printable"),
        ("", "7bit"),
    ],
)
def test_text_transfer_encoding(text: str, cte: str) -> None:
    raw = build(text=text)
    assert_wire(raw)
    assert raw.isascii()  # never 8bit
    message = parse(raw)
    assert message["Content-Transfer-Encoding"] == cte
    assert message.get_content() == crlf(text)


def test_quoted_printable_lines_are_short_and_exact() -> None:
    text = ("ü" * 300 + " trailing space \n" + "=" * 200 + "\t\n" + "y" * 5000) * 3
    raw = build(text=text, html=text)
    assert_wire(raw)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert not any(line.endswith((b" ", b"\t")) for line in body.split(b"\r\n"))
    text_part, html_part = leaves(parse(raw))
    assert text_part.get_content() == crlf(text)
    assert html_part.get_content() == crlf(text)


@pytest.mark.parametrize("text", ["a\nb", "a\r\nb", "a\rb", "a\n\r\nb\r", "last line"])
def test_line_ends_become_crlf(text: str) -> None:
    message = parse(build(text=text))
    assert message.get_content() == crlf(text)


# --- header fields ----------------------------------------------------------------------------


def test_header_order() -> None:
    raw = build(
        to=("bob@example.test",),
        cc=("carol@example.test",),
        reply_to=("help@example.test",),
        subject="Hi",
        text="x",
        html="<p>x</p>",
        headers=(("X-Campaign", "spring"), ("In-Reply-To", "<a@b.test>")),
        system_headers=(("List-Unsubscribe", "<https://example.test/u>"),),
        date=1_700_000_000,
    )
    assert field_names(raw) == [
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Unsubscribe",
        "X-Campaign",
        "In-Reply-To",
        "Content-Type",
    ]
    assert b"Bcc" not in raw


def test_optional_address_fields_are_left_out() -> None:
    raw = build(to=(), text="x")
    assert field_names(raw)[:3] == ["From", "Subject", "Date"]


def test_plain_fields_are_written_as_they_are() -> None:
    raw = build(subject="Lunch on Friday?", text="x", date=0)
    assert b"\r\nSubject: Lunch on Friday?\r\n" in raw
    assert b"\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n" in raw
    assert raw.startswith(b"From: Ann Example <ann@example.test>\r\nTo: bob@example.test\r\n")
    assert b"\r\nMIME-Version: 1.0\r\n" in raw


def test_empty_subject() -> None:
    raw = build(text="x")
    assert b"\r\nSubject:\r\n" in raw
    assert parse(raw)["Subject"] == ""


@pytest.mark.parametrize(
    "subject",
    [
        "Grüße aus Köln",
        "日本語の件名" * 20,
        "  leading and trailing  ",
        "two  spaces\tand a tab",
        "=?utf-8?q?looks_encoded?=",
        "control \x01 char and line\u2028separator \x0b\x0c\x85",
        "x" * 990,
        "a " * 400,
    ],
)
def test_subject_round_trips(subject: str) -> None:
    raw = build(subject=subject, text="x")
    assert_wire(raw)
    assert raw.isascii()
    for line in field_lines(raw, b"Subject"):
        assert len(line) <= 76 or b"=?" not in line  # RFC 2047 §2
    assert parse(raw)["Subject"] == subject


def test_non_ascii_subject_is_encoded_words() -> None:
    raw = build(subject="Grüße " * 30, text="x")
    lines = field_lines(raw, b"Subject")
    assert len(lines) > 1
    assert all(b"=?utf-8?" in line and len(line) <= 76 for line in lines)
    for word in re.findall(rb"=\?[^?]+\?[qb]\?[^?]*\?=", b"".join(lines)):
        assert len(word) <= 75
    assert str(make_header(decode_header(b"\r\n".join(lines)[9:].decode()))) == "Grüße " * 30


@pytest.mark.parametrize(
    ("given", "display"),
    [
        ("Jörg Müller <joerg@example.test>", "Jörg Müller"),
        ("Zoë Example <zoe@example.test>", "Zoë Example"),
        ('"Doe, J." <j@example.test>', "Doe, J."),
        ('"say \\"hi\\"" <s@example.test>', 'say "hi"'),
        ("=?utf-8?q?Encoded?= <e@example.test>", "Encoded"),
        ('"Two  spaces" <t@example.test>', "Two  spaces"),
        ('"Tab\there" <t@example.test>', "Tab\there"),
    ],
)
def test_display_names_round_trip(given: str, display: str) -> None:
    raw = build(sender=given, text="x")
    assert raw.isascii()
    (address,) = parse(raw)["From"].addresses
    assert address.display_name == display


def test_long_non_ascii_display_name_decodes_per_rfc_2047() -> None:
    name = "Ünïcödé Ñämé " * 8 + "end"
    raw = build(sender=f"{name} <x@example.test>", text="x")
    assert_wire(raw)
    lines = field_lines(raw, b"From")
    assert all(len(line) <= 76 for line in lines)
    value = b"\r\n".join(lines)[6:].decode().rsplit(" <", 1)[0]
    # RFC 2047 §6.2: white space between encoded words is dropped (Python's own phrase
    # parser keeps it, hence the decoder of email.header here).
    assert str(make_header(decode_header(value))) == name


@pytest.mark.parametrize("name", ["Zoë  Two", "Zoë\tTab", " Zoë"])
def test_non_ascii_display_name_with_odd_white_space_is_encoded_whole(name: str) -> None:
    raw = build(sender=f'"{name}" <z@example.test>', text="x")
    value = b"\r\n".join(field_lines(raw, b"From"))[6:].decode().rsplit(" <", 1)[0]
    assert value.startswith("=?utf-8?")
    assert str(make_header(decode_header(value))) == name


def test_mixed_display_name_encodes_only_what_needs_it() -> None:
    raw = build(sender="Ünïcödé Name That Is Rather Long <x@example.test>", text="x")
    assert b"?= Name That Is Rather Long" in raw
    assert parse(raw)["From"].addresses[0].display_name == "Ünïcödé Name That Is Rather Long"


def test_many_recipients_fold_between_mailboxes() -> None:
    to = tuple(f"Person {i} <person.{i}@example.test>" for i in range(40))
    raw = build(to=to, cc=("Ça Va <cv@example.test>", "plain@example.test"), text="x")
    assert_wire(raw)
    assert all(len(line) <= 76 for line in field_lines(raw, b"To"))
    message = parse(raw)
    assert [a.addr_spec for a in message["To"].addresses] == [
        f"person.{i}@example.test" for i in range(40)
    ]
    assert [(a.display_name, a.addr_spec) for a in message["Cc"].addresses] == [
        ("Ça Va", "cv@example.test"),
        ("", "plain@example.test"),
    ]


def test_custom_header_values() -> None:
    long_words = " ".join(["word"] * 190)
    raw = build(
        text="x",
        headers=(
            ("X-Plain", "just text"),
            ("X-Unicode", "wert ä"),
            ("X-Long", long_words),
            ("X-One-Long-Word", "y" * 990),
            ("X-Empty", ""),
        ),
    )
    assert_wire(raw)
    assert raw.isascii()
    assert b"\r\nX-Plain: just text\r\n" in raw
    assert b"\r\nX-Empty:\r\n" in raw
    message = parse(raw)
    assert message["X-Plain"] == "just text"
    assert message["X-Unicode"] == "wert ä"
    assert message["X-Long"] == long_words
    assert message["X-One-Long-Word"] == "y" * 990
    assert all(len(line) <= 76 for line in field_lines(raw, b"X-Long"))


def test_long_field_name_with_encoded_value() -> None:
    name = "X-" + "n" * 74
    raw = build(text="x", headers=((name, "ä" * 100),))
    assert_wire(raw)
    assert parse(raw)[name] == "ä" * 100


def test_system_headers_are_trusted_names() -> None:
    raw = build(
        text="x",
        system_headers=(
            ("List-Unsubscribe", "<https://example.test/u/1>, <mailto:u@example.test>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Mailwright-Tag", "t1"),
        ),
    )
    message = parse(raw)
    assert message["List-Unsubscribe"] == "<https://example.test/u/1>, <mailto:u@example.test>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Mailwright-Tag"] == "t1"


def test_message_id_given_or_made() -> None:
    assert parse(build(text="x", message_id="<abc.1@example.test>"))["Message-ID"] == (
        "<abc.1@example.test>"
    )
    made = parse(build(text="x"))["Message-ID"]
    assert re.fullmatch(r"<Q1\.[0-9a-f]{12}@mx\.example\.test>", made)
    assert parse(build(text="x", message_id="<a@[192.0.2.1]>"))["Message-ID"] == "<a@[192.0.2.1]>"


def test_date_defaults_to_now() -> None:
    date = parse(build(text="x"))["Date"].datetime
    assert abs(date.timestamp() - time.time()) < 60
    assert date.utcoffset() is not None


# --- SMTPUTF8 ---------------------------------------------------------------------------------


def test_non_ascii_local_part_makes_an_smtputf8_message() -> None:
    draft = Draft(
        sender="Jörg <jörg@example.test>",
        to=("bob@example.test",),
        subject="Grüße",
        text="Hallo",
        headers=(("X-Gruss", "schön"),),
    )
    assert needs_smtputf8(draft)
    raw = compose(draft, hostname="mx.example.test", queue_id="Q1")
    assert_wire(raw)
    assert "From: Jörg <jörg@example.test>\r\n".encode() in raw  # RFC 6532 §3.2: raw UTF-8
    assert "\r\nSubject: Grüße\r\n".encode() in raw
    assert "\r\nX-Gruss: schön\r\n".encode() in raw
    message = parse(raw)
    assert message["Subject"] == "Grüße"
    (address,) = message["From"].addresses
    assert unescape(address.addr_spec) == "jörg@example.test"
    assert unescape(address.display_name) == "Jörg"
    assert raw.split(b"\r\n\r\n", 1)[1].isascii()  # the body is still 7bit


def test_smtputf8_still_encodes_what_cannot_stand_raw() -> None:
    raw = build(sender="jörg@example.test", subject=" leading space", text="x")
    assert b"Subject: =?utf-8?" in raw
    assert parse(raw)["Subject"] == " leading space"


@pytest.mark.parametrize(
    ("sender", "to", "expected"),
    [
        ("ann@example.test", ("bob@example.test",), False),
        ("Jörg <joerg@example.test>", ("Zoë <zoe@example.test>",), False),
        ("ann@example.test", ("zoë@example.test",), True),
        ("ann@bücher.example", (), True),
    ],
)
def test_needs_smtputf8(sender: str, to: tuple[str, ...], expected: bool) -> None:
    assert needs_smtputf8(Draft(sender=sender, to=to, text="x")) is expected


def test_non_ascii_domain_is_kept_as_given() -> None:
    raw = build(sender="ann@Bücher.example", text="x")
    assert "From: ann@Bücher.example\r\n".encode() in raw


# --- refusals ---------------------------------------------------------------------------------

LOGO = Attachment("logo.png", b"x", "image/png", inline=True, content_id="logo")
REFUSED = [
    ({"headers": (("X-Foo", "a\rb"),)}, "headers.X-Foo"),
    ({"headers": (("X-Foo", "a\nb"),)}, "headers.X-Foo"),
    ({"headers": (("X-Foo", "a\x00b"),)}, "headers.X-Foo"),
    ({"headers": (("X\nFoo", "v"),)}, "headers.X\\nFoo"),
    ({"headers": (("X:Foo", "v"),)}, "headers.X:Foo"),
    ({"headers": (("X Foo", "v"),)}, "headers.X Foo"),
    ({"headers": (("X-Fü", "v"),)}, "headers.X-F\\xfc"),
    ({"headers": (("", "v"),)}, "headers."),
    ({"headers": (("X" * 77, "v"),)}, "headers." + "X" * 77),
    ({"headers": (("X-Foo", "a" * 999),)}, "headers.X-Foo"),
    ({"headers": (("X-Foo", "ä" * 500),)}, "headers.X-Foo"),
    ({"headers": (("X-Foo", "\ud800"),)}, "headers.X-Foo"),
    ({"headers": (("Subject", "x"),)}, "headers.Subject"),
    ({"headers": (("bcc", "x@example.test"),)}, "headers.bcc"),
    ({"headers": (("resent-from", "x"),)}, "headers.resent-from"),
    ({"headers": (("ARC-Seal", "x"),)}, "headers.ARC-Seal"),
    ({"headers": (("X-Mailwright-Queue", "x"),)}, "headers.X-Mailwright-Queue"),
    ({"headers": (("List-Unsubscribe", "<x>"),)}, "headers.List-Unsubscribe"),
    (
        {"system_headers": (("List-Unsubscribe", "<a>\r\nBcc: x"),)},
        "system_headers.List-Unsubscribe",
    ),
    ({"system_headers": (("Bad Name", "v"),)}, "system_headers.Bad Name"),
    ({"attachments": (Attachment("a", b"", "text"),)}, "attachments.0.content_type"),
    ({"attachments": (Attachment("a", b"", "text/"),)}, "attachments.0.content_type"),
    (
        {"attachments": (Attachment("a", b"", "text/plain; charset=x"),)},
        "attachments.0.content_type",
    ),
    ({"attachments": (Attachment("a", b"", "te xt/plain"),)}, "attachments.0.content_type"),
    ({"attachments": (Attachment("a", b"", "multipart/mixed"),)}, "attachments.0.content_type"),
    ({"attachments": (Attachment("a", b"", "message/rfc822"),)}, "attachments.0.content_type"),
    ({"attachments": (LOGO, Attachment("a", b"", "image/\r\n"))}, "attachments.1.content_type"),
    ({"attachments": (Attachment("a/b.txt", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("a\\b.txt", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("..", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("a\r\nb", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("a\x00b", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("a\u2028b", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("\ud800", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment(" a.txt", b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("x" * 256, b""),)}, "attachments.0.filename"),
    ({"attachments": (Attachment("a", b"", content_id="a b"),)}, "attachments.0.content_id"),
    ({"attachments": (Attachment("a", b"", content_id="<a@b>"),)}, "attachments.0.content_id"),
    ({"attachments": (Attachment("a", b"", content_id="a\r\n@b"),)}, "attachments.0.content_id"),
    ({"attachments": (Attachment("a", b"", content_id=""),)}, "attachments.0.content_id"),
    ({"attachments": (Attachment("a", b"", content_id="x" * 251),)}, "attachments.0.content_id"),
    ({"attachments": (LOGO, LOGO)}, "attachments.1.content_id"),
    ({"sender": "a@example.test, c@example.test"}, "from"),
    ({"sender": "<>"}, "from"),
    ({"sender": "no-at-sign"}, "from"),
    ({"sender": "a@"}, "from"),
    ({"sender": "@example.test"}, "from"),
    ({"sender": "x\r\n@y"}, "from"),
    ({"sender": "Ann <a@example.test>\r\nBcc: x@y"}, "from"),
    ({"sender": ""}, "from"),
    ({"sender": "   "}, "from"),
    ({"sender": "group: a@example.test;"}, "from"),
    ({"sender": "a b@example.test"}, "from"),
    ({"sender": "a..b@example.test"}, "from"),
    ({"sender": "a@-bad-.test"}, "from"),
    ({"sender": "Ann <a@example.test"}, "from"),
    ({"sender": "=?utf-8?q?A=0D=0AB?= <a@example.test>"}, "from"),
    ({"sender": "a@example.test\ud800"}, "from"),
    ({"sender": ("x" * 65) + "@example.test"}, "from"),
    ({"to": ("ok@example.test", "bad")}, "to.1"),
    ({"cc": ("a@",)}, "cc.0"),
    ({"reply_to": ("a@b.test", "c@d.test, e@f.test")}, "reply_to.1"),
    ({"subject": "line\nbreak"}, "subject"),
    ({"subject": "carriage\rreturn"}, "subject"),
    ({"subject": "nul\x00"}, "subject"),
    ({"subject": "\udfff"}, "subject"),
    ({"text": None, "html": None}, "text"),
    ({"text": "lone \ud800 surrogate"}, "text"),
    ({"text": None, "html": "\ud800"}, "html"),
    ({"message_id": "no-brackets@example.test"}, "message_id"),
    ({"message_id": "<no-at-sign>"}, "message_id"),
    ({"message_id": "<a@b>\r\nBcc: x"}, "message_id"),
    ({"message_id": "<" + "a" * 990 + "@b>"}, "message_id"),
    ({"date": float("nan")}, "date"),
    ({"date": 1e20}, "date"),
]


@pytest.mark.parametrize(("change", "field"), REFUSED)
def test_refused_drafts_name_their_field(change: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"text": "x"}
    fields.update(change)
    with pytest.raises(ComposeError) as caught:
        build(**fields)
    assert caught.value.field == field
    assert caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


def test_needs_smtputf8_refuses_what_compose_refuses() -> None:
    with pytest.raises(ComposeError) as caught:
        needs_smtputf8(Draft(sender="ann@example.test", cc=("bad",)))
    assert caught.value.field == "cc.0"


@pytest.mark.parametrize(
    "name",
    ["X-Campaign", "List-Id", "In-Reply-To", "References", "Keywords", "x-resentful", "Arc"],
)
def test_check_header_allows_custom_fields(name: str) -> None:
    check_header(name, "value")


def test_check_header_field_prefix() -> None:
    with pytest.raises(ComposeError) as caught:
        check_header("Content-Type", "text/plain", field="request.headers")
    assert caught.value.field == "request.headers.Content-Type"


def test_protected_sets_are_lower_case() -> None:
    assert all(name == name.lower() for name in PROTECTED_HEADERS)
    assert all(prefix == prefix.lower() for prefix in PROTECTED_PREFIXES)
    assert {"from", "bcc", "dkim-signature", "list-unsubscribe-post"} <= PROTECTED_HEADERS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ann@example.test", ("", "ann@example.test")),
        ("Ann Example <ann@example.test>", ("Ann Example", "ann@example.test")),
        ("<ann@example.test>", ("", "ann@example.test")),
        ('"Example, Ann" <ann@example.test>', ("Example, Ann", "ann@example.test")),
        ('"john doe"@example.test', ("", '"john doe"@example.test')),
        ("jörg@bücher.example", ("", "jörg@bücher.example")),
        ("Ann <ann@EXAMPLE.test>", ("Ann", "ann@EXAMPLE.test")),
        ("a@[192.0.2.1]", ("", "a@[192.0.2.1]")),
        ("  ann@example.test  ", ("", "ann@example.test")),
    ],
)
def test_parse_mailbox(text: str, expected: tuple[str, str]) -> None:
    assert parse_mailbox(text, "to.0") == expected


# --- properties -------------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
ANY_TEXT = st.text(st.one_of(st.characters(), SURROGATE, st.sampled_from("\r\n \t=?")))
# Mostly ASCII with many folding points and lookalikes of encoded words and quoting.
WORDY = st.text(st.sampled_from(' \t aaaa bb=?q?_"(),.\\ü'), max_size=900)


def plain_lines(text: str) -> str:
    return crlf(text).replace("\r\n", "\n")


@PROPERTY
@given(
    subject=st.text() | WORDY,
    text=st.none() | st.text(),
    html=st.none() | st.text(),
    utf8=st.booleans(),
)
def test_compose_round_trips(subject: str, text: str | None, html: str | None, utf8: bool) -> None:
    """For any text: ComposeError or a wire-clean message that parses back to the same subject,
    text and html (line ends aside)."""
    sender = "jörg@example.test" if utf8 else SENDER
    try:
        raw = build(sender=sender, subject=subject, text=text, html=html)
    except ComposeError as exc:
        assert exc.field in ("subject", "text")
        assert exc.field != "subject" or re.search("[\r\n\x00]", subject)
        return
    assert_wire(raw)
    assert raw.isascii() or utf8
    message = parse(raw)
    assert message["Subject"] == subject
    parts = {p.get_content_type(): p.get_content() for p in leaves(message)}
    if text is not None:
        assert parts["text/plain"].replace("\r\n", "\n") == plain_lines(text)
    if html is not None:
        assert parts["text/html"].replace("\r\n", "\n") == plain_lines(html)


@PROPERTY
@given(subject=ANY_TEXT, text=st.none() | ANY_TEXT, header=ANY_TEXT, name=ANY_TEXT)
def test_compose_raises_only_compose_error(subject: str, text: str, header: str, name: str) -> None:
    try:
        raw = build(
            sender=f"{name} <ann@example.test>",
            subject=subject,
            text=text,
            headers=(("X-Value", header),),
        )
    except ComposeError:
        return
    assert_wire(raw)
    assert parse(raw)["X-Value"] == header


@PROPERTY
@given(st.text(max_size=120) | WORDY)
def test_display_names_survive(name: str) -> None:
    try:
        display, spec = parse_mailbox(f"{name} <ann@example.test>", "from")
    except ComposeError:
        return
    raw = build(sender=f"{name} <ann@example.test>", text="x")
    assert_wire(raw)
    (address,) = parse(raw)["From"].addresses
    assert address.addr_spec == spec == "ann@example.test"
    # Python's phrase parser keeps the white space between encoded words (RFC 2047 §6.2
    # drops it), so compare without white space.
    assert "".join(address.display_name.split()) == "".join(display.split())


@PROPERTY
@given(st.text())
def test_parse_mailbox_raises_only_compose_error(text: str) -> None:
    try:
        display, spec = parse_mailbox(text, "to.0")
    except ComposeError as exc:
        assert exc.field == "to.0"
        return
    assert not re.search("[\r\n\x00]", display + spec)
    assert "@" in spec
