"""section(), part_at(), binary(), binary_size(): RFC 3501 §6.4.5 BODY[section] and RFC 3516
BINARY over awkward messages."""

from __future__ import annotations

import base64

import pytest

from mailwright.message.structure import (
    analyze,
    binary,
    binary_size,
    decode_transfer,
    part_at,
    section,
)
from tests.unit.message.helpers_structure import GIF, RFC3501_EXAMPLE, multipart, part

RAW = RFC3501_EXAMPLE
S = analyze(RAW)


def sec(part_: tuple[int, ...], text: str | None = None, fields: tuple[str, ...] = ()) -> bytes:
    return section(RAW, S, part_, text, fields)


def test_whole_message_header_and_text() -> None:
    assert sec(()) == RAW
    header = sec((), "HEADER")
    assert header.startswith(b"From: a@example.test\r\n") and header.endswith(b"\r\n\r\n")
    assert header + sec((), "TEXT") == RAW
    assert sec((), "header") == header  # any case


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ((1,), b"part 1 text\r\n"),
        ((2,), b"AAEC\r\n"),
        ((3, 1), b"part 3.1 text"),
        ((3, 2), b"3.2 bytes"),
        ((4, 1), GIF),
        ((4, 2, 1), b"part 4.2.1 text"),
        ((4, 2, 2, 1), b"4.2.2.1 plain"),
        ((4, 2, 2, 2), b"4.2.2.2 rich"),
    ],
)
def test_rfc3501_part_numbers(numbers: tuple[int, ...], expected: bytes) -> None:
    assert sec(numbers) == expected


def test_message_rfc822_part_header_text_and_body() -> None:
    three = sec((3,))
    assert three.startswith(b"Subject: three\r\n")
    assert sec((3,), "HEADER") + sec((3,), "TEXT") == three
    assert sec((3,), "HEADER.FIELDS", ("subject",)) == b"Subject: three\r\n\r\n"
    assert (
        sec((4, 2), "HEADER")
        == b"Subject: four two\r\n" + b'Content-Type: multipart/mixed; boundary="fourtwo"\r\n\r\n'
    )
    assert sec((4, 2, 2)).startswith(b"--alt\r\n")  # a multipart's body, delimiters and all


def test_mime_headers() -> None:
    assert (
        sec((4, 1), "MIME")
        == b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert sec((3,), "MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    assert sec((), "MIME") == b""  # MIME needs a part


def test_single_part_message_part_one_is_its_body() -> None:
    raw = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    s = analyze(raw)
    assert section(raw, s, (1,), None) == b"hello\r\n"
    assert section(raw, s, (1,), "MIME") == raw[: raw.index(b"hello")]
    assert section(raw, s, (2,), None) == b""
    assert section(raw, s, (1, 1), None) == b""  # text/plain has no parts
    assert section(raw, s, (1,), "HEADER") == b""  # not a message/rfc822 part
    assert section(raw, s, (1,), "TEXT") == b""


def test_message_rfc822_whose_body_is_single_part() -> None:
    inner = b"Subject: inner\r\n\r\njust text"
    raw = multipart("b", part(inner, "Content-Type: message/rfc822"))
    s = analyze(raw)
    assert section(raw, s, (1,), None) == inner
    assert section(raw, s, (1, 1), None) == b"just text"
    assert section(raw, s, (1, 1), "MIME") == b"Subject: inner\r\n\r\n"
    assert section(raw, s, (1, 2), None) == b""


def test_top_level_message_rfc822() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody"
    s = analyze(raw)
    assert section(raw, s, (1,), "HEADER") == b"Subject: in\r\n\r\n"
    assert section(raw, s, (1, 1), None) == b"body"


@pytest.mark.parametrize("numbers", [(0,), (5,), (1, 1), (4, 3), (4, 2, 3), (3, 0), (-1,)])
def test_missing_parts_are_empty(numbers: tuple[int, ...]) -> None:
    assert part_at(S, numbers) is None
    assert sec(numbers) == b""
    assert sec(numbers, "MIME") == b""
    assert sec(numbers, "HEADER") == b""
    assert sec(numbers, "HEADER.FIELDS", ("subject",)) == b""


def test_unknown_section_text_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        sec((), "BODY")


HEADERS = (
    b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Subject: first\r\n"
    b"X-Junk line without colon\r\n"
    b"To: x@y,\r\n  z@w\r\n"
    b"subject: second\r\n"
    b"From : spaced@colon\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_header_fields_keep_order_folding_and_duplicates() -> None:
    s = analyze(HEADERS)
    got = section(HEADERS, s, (), "HEADER.FIELDS", ("SUBJECT", "to", "from"))
    assert got == (
        b"Subject: first\r\nTo: x@y,\r\n  z@w\r\nsubject: second\r\nFrom : spaced@colon\r\n\r\n"
    )


def test_header_fields_not() -> None:
    s = analyze(HEADERS)
    got = section(HEADERS, s, (), "HEADER.FIELDS.NOT", ("subject", "received", "To", "From"))
    assert got == b"X-Junk line without colon\r\n\r\n"


def test_header_fields_no_match_is_just_the_blank_line() -> None:
    s = analyze(HEADERS)
    assert section(HEADERS, s, (), "HEADER.FIELDS", ("x-none",)) == b"\r\n"


def test_header_fields_of_a_header_without_final_newline() -> None:
    raw = b"Subject: s\r\nTo: t"
    s = analyze(raw)
    assert section(raw, s, (), "HEADER.FIELDS", ("to",)) == b"To: t\r\n\r\n"
    assert section(raw, s, (), "HEADER") == raw
    assert section(raw, s, (), "TEXT") == b""


def test_header_fields_bare_lf() -> None:
    raw = b"Subject: s\nTo: a,\n b\n\nbody"
    s = analyze(raw)
    assert section(raw, s, (), "HEADER.FIELDS", ("to",)) == b"To: a,\n b\n\r\n"


def test_no_header_message_sections() -> None:
    raw = b"no header here\r\n"
    s = analyze(raw)
    assert section(raw, s, (), "HEADER") == b""
    assert section(raw, s, (), "TEXT") == raw
    assert section(raw, s, (), "HEADER.FIELDS.NOT", ()) == b"\r\n"


# --- BINARY (RFC 3516) ---

PAYLOAD = bytes(range(256)) * 3
QP = b"caf=C3=A9 soft=\r\nbreak trailing   \r\n=ZZ kept\r\n"


def _binary_message() -> bytes:
    b64 = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    return multipart(
        "b",
        part(b64, "Content-Type: application/octet-stream", "Content-Transfer-Encoding: BASE64"),
        part(
            QP,
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
        ),
        part(b"plain 8bit \xc3\xa9", "Content-Transfer-Encoding: 8bit"),
        part(b"begin 644 x\r\n", "Content-Transfer-Encoding: x-uuencode"),
        part(b"no encoding header"),
        part(b"QUJD\r\n!!!\r\nRE\r\n", "Content-Transfer-Encoding: base64"),
    )


def test_binary_decodes_base64_and_quoted_printable() -> None:
    raw = _binary_message()
    s = analyze(raw)
    assert binary(raw, s, (1,)) == PAYLOAD
    assert binary(raw, s, (2,)) == "café softbreak trailing\r\n=ZZ kept\r\n".encode()
    assert binary(raw, s, (3,)) == b"plain 8bit \xc3\xa9"
    assert binary(raw, s, (5,)) == b"no encoding header"
    assert binary(raw, s, (6,)) == b"ABCD"  # junk skipped, dangling bits dropped
    assert binary(raw, s, ()) == raw


def test_binary_unknown_encoding_and_missing_part() -> None:
    raw = _binary_message()
    s = analyze(raw)
    assert binary(raw, s, (4,)) is None
    assert binary_size(raw, s, (4,)) is None
    assert binary(raw, s, (9,)) == b""
    assert binary_size(raw, s, (9,)) == 0


def test_binary_size() -> None:
    raw = _binary_message()
    s = analyze(raw)
    assert binary_size(raw, s, (1,)) == len(PAYLOAD)
    assert binary_size(raw, s, (3,)) == len(b"plain 8bit \xc3\xa9")
    assert binary_size(raw, s, ()) == len(raw)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"YQ", b"a"),  # missing padding
        (b"YWI", b"ab"),
        (b"YWJj\r\nZA==", b"abcd"),
        (b"Y", b""),  # a lone sixth-bit group is dropped
        (b"", b""),
    ],
)
def test_lenient_base64(data: bytes, expected: bytes) -> None:
    assert decode_transfer(data, "base64") == expected
