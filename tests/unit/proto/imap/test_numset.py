"""Sequence sets (RFC 9051 §9 sequence-set, RFC 5182 "$") and UID set compression."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap.numset import (
    MAX_NUMBER,
    STAR,
    SequenceSet,
    SequenceSetError,
    compress_uids,
)


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("1", ((1, 1),)),
        ("1:3", ((1, 3),)),
        ("3:1", ((1, 3),)),  # RFC 9051 §9: 2:4 and 4:2 are equivalent
        ("*", ((STAR, STAR),)),
        ("1:*", ((1, STAR),)),
        ("*:7", ((7, STAR),)),
        ("*:*", ((STAR, STAR),)),
        ("1,3:4,9", ((1, 1), (3, 4), (9, 9))),
        ("4294967295", ((MAX_NUMBER, MAX_NUMBER),)),
    ],
)
def test_parse(text: str, ranges: tuple[tuple[int | None, int | None], ...]) -> None:
    parsed = SequenceSet.parse(text)
    assert parsed.ranges == ranges
    assert SequenceSet.parse(parsed.to_str()) == parsed
    assert str(parsed) == parsed.to_str()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "1:0",
        "01",
        "a",
        "1,",
        ",1",
        "1::2",
        "1:2:3",
        "-1",
        "4294967296",
        "9" * 30,
        "1 2",
        "\u00b2",
        "$,1",
        "+1",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(text)


def test_saved_result() -> None:
    saved = SequenceSet.parse("$")
    assert saved.saved and saved.to_str() == "$"
    with pytest.raises(SequenceSetError, match=r"\$"):
        SequenceSet.parse("$", allow_saved=False)
    with pytest.raises(LocalProtocolError):
        saved.resolve(5)


@pytest.mark.parametrize(
    ("text", "largest", "resolved"),
    [
        ("1:3,2:5", 10, [(1, 5)]),
        ("5,4,1", 10, [(1, 1), (4, 5)]),
        ("*", 7, [(7, 7)]),
        ("3:*", 7, [(3, 7)]),
        ("559:*", 500, [(500, 559)]),  # RFC 9051 §6.4.8: "*" is the last UID even below 559
        ("*", 0, []),  # an empty mailbox has no last message
        ("2,4:*", 0, [(2, 2)]),
        ("1:2,3:4", 9, [(1, 4)]),  # adjacent ranges merge
        ("1:9,2:3", 9, [(1, 9)]),
    ],
)
def test_resolve(text: str, largest: int, resolved: list[tuple[int, int]]) -> None:
    assert SequenceSet.parse(text).resolve(largest) == resolved


def test_contains() -> None:
    s = SequenceSet.parse("2:4,*")
    assert [n for n in range(1, 11) if s.contains(n, 10)] == [2, 3, 4, 10]
    assert not s.contains(10, 0)
    assert s.has_star and not SequenceSet.parse("1:3").has_star


def test_of_and_compress() -> None:
    assert compress_uids([7, 1, 2, 3, 3]) == "1:3,7"
    assert compress_uids([]) == ""
    assert SequenceSet.of([5, 6, 9]).to_str() == "5:6,9"
    with pytest.raises(LocalProtocolError):
        SequenceSet.of([])
    with pytest.raises(LocalProtocolError):
        compress_uids([0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"ranges": ((1, 1),), "saved": True},
        {"ranges": ((0, 1),)},
        {"ranges": ((STAR, 1),)},
        {"ranges": ((3, 1),)},
        {"ranges": ((1, MAX_NUMBER + 1),)},
    ],
)
def test_constructor_checks(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        SequenceSet(**kwargs)  # type: ignore[arg-type]
