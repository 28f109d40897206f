"""to_seven_bit: 8-bit bodies re-encoded for a server without 8BITMIME (RFC 6152 §3),
8-bit headers refused (the 5.6.3 case)."""

from __future__ import annotations

import email
import email.message
from email import policy

import pytest

from mailwright.outbound.downgrade import ConversionError, to_seven_bit


def parse(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def text_of(part: email.message.EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_seven_bit_message_is_returned_unchanged() -> None:
    data = b"Subject: x\r\n\r\nplain\r\n"
    assert to_seven_bit(data) is data


def test_plain_text_becomes_quoted_printable() -> None:
    data = (
        "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße\r\n.dot line \r\nend\r\n"
    ).encode()
    out = to_seven_bit(data)
    assert out.isascii()
    assert b"\r\n" in out and out.count(b"\n") == out.count(b"\r\n")
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["MIME-Version"] == "1.0"
    assert text_of(msg) == "Schöne Grüße\n.dot line \nend\n"


def test_message_without_mime_headers() -> None:
    out = to_seven_bit("Subject: x\r\n\r\nü\r\n".encode())
    assert out.isascii()
    assert b"MIME-Version: 1.0" in out
    assert b"Content-Transfer-Encoding: quoted-printable" in out


def test_multipart_with_binary_and_nested_message() -> None:
    data = (
        'Subject: mixed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "préambule\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Grüße\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "\u00ff\u00fe raw\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "ascii only\r\n"
        "--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\ninnen ü\r\n"
        "--b--\r\n"
    ).encode()
    out = to_seven_bit(data)
    assert out.isascii()
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "7bit"
    text, binary, ascii_part, attached = list(msg.iter_parts())
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(text) == "Grüße"
    assert binary["Content-Transfer-Encoding"] == "base64"
    assert binary.get_content() == "\u00ff\u00fe raw".encode()
    assert ascii_part["Content-Transfer-Encoding"] == "7bit"
    assert attached["Content-Transfer-Encoding"] == "7bit"
    inner = attached.get_content()
    assert inner["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(inner) == "innen ü"


def test_eight_bit_header_cannot_be_converted() -> None:
    with pytest.raises(ConversionError, match="header"):
        to_seven_bit("Subject: Grüße\r\n\r\nbody ü\r\n".encode())


def test_eight_bit_header_in_a_part_cannot_be_converted() -> None:
    data = (
        'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        '--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="ä.txt"\r\n'
        "\r\nü\r\n--b--\r\n"
    ).encode()
    with pytest.raises(ConversionError, match="part header"):
        to_seven_bit(data)
