"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwright.proto.imap.mutf7 import MUtf7Error, decode, encode


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("a&b", "a&-b"),
        ("&", "&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        # RFC 3501 §5.1.3's example
        ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("\U0001f4e7", "&2D3c5w-"),  # outside the BMP: a surrogate pair
        ("", ""),
        ("\t", "&AAk-"),
    ],
)
def test_round_trip(name: str, encoded: str) -> None:
    assert encode(name) == encoded
    assert decode(encoded) == name


@pytest.mark.parametrize(
    "text",
    [
        "&",  # unterminated
        "&AGE",  # unterminated
        "&APw-&APw-",  # adjacent runs should be one
        "&AGE/-",  # "/" is "," here
        "&A-",  # truncated
        "&AG-",  # not a whole code unit
        "&AGF-",  # non-zero bits left over
        "&AGEA-",  # odd number of octets
        "&2D0-",  # unpaired surrogate
        "&AEE-",  # "A" must not be encoded
        "\u00fc",  # 8-bit must be encoded
        "\t",
        "&ü-",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(MUtf7Error):
        decode(text)


def test_runs_separated_by_ampersand_escape() -> None:
    assert decode("&APw-&-&APw-") == "ü&ü"


@given(st.text())
def test_any_text_round_trips(name: str) -> None:
    try:
        name.encode("utf-16-be")
    except UnicodeEncodeError:
        return  # lone surrogates are no mailbox name
    assert decode(encode(name)) == name
