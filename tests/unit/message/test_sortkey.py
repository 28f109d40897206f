"""mailwright.message.sortkey: RFC 5256 base subject and SORT/THREAD keys, RFC 5957 display
names."""

from __future__ import annotations

import time

import pytest

from mailwright.message.sortkey import (
    base_subject,
    display_key,
    display_name,
    first_mailbox,
    in_reply_to,
    message_id,
    msg_ids,
    references,
    split_subject,
    subject_key,
    thread_parents,
)
from mailwright.message.structure import analyze


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("hello", "hello", False),
        ("Re: hello", "hello", True),
        ("RE: Re: re:hello", "hello", True),
        ("Re : spaced colon", "spaced colon", True),
        ("Fw: a", "a", True),
        ("FWD: a", "a", True),
        ("Ref: not a reply", "Ref: not a reply", False),
        ("Fwd: hello (fwd)", "hello", True),
        ("hello (FWD) (fwd)  ", "hello", True),
        ("(fwd)", "", True),
        ("[list] Re: hello", "hello", True),
        ("Re [list]: hello", "hello", True),
        ("[a][b] Re: hello", "hello", True),
        ("[list] hello", "hello", False),
        ("[a] [b] c", "c", False),
        ("[list]", "[list]", False),  # removing it would leave nothing
        ("[a][b]", "[b]", False),
        ("[a] [b]  ", "[b]", False),
        ("[fwd: hello]", "hello", True),
        ("[Fwd: Re: [list] hello (fwd)]", "hello", True),
        ("Re: [fwd: Re: x]", "x", True),
        ("[fwd:]", "", True),
        ("[fwd: unclosed", "[fwd: unclosed", False),  # no "]": neither a blob nor a wrapper
        ("  hello \t\r\n  world  ", "hello world", False),
        ("=?utf-8?q?Re:_caf=C3=A9?=", "café", True),
        ("=?utf-8?q?Re:?= =?utf-8?q?_x?=", "x", True),
        ("", "", False),
        ("Re:", "", True),
        ("re: RE: [fwd: [l] Fw: (fwd)]", "", True),
    ],
)
def test_split_subject(subject: str, base: str, reply: bool) -> None:
    assert split_subject(subject) == (base, reply)
    assert base_subject(subject) == base


def test_base_subject_is_linear_on_hostile_input() -> None:
    hostile = [
        "[a]" * 20000 + "x",
        "[a]" * 20000,
        "(fwd)" * 20000 + "x",
        "x" + "(fwd)" * 20000,
        "Re: " * 20000 + "x",
        "[" * 20000,
    ]
    start = time.perf_counter()
    for s in hostile:
        split_subject(s)
    # Not a timing test of speed, only a guard against quadratic behaviour (seconds, not ms).
    assert time.perf_counter() - start < 5


def test_subject_key() -> None:
    s = analyze(b"Subject: Re: [List] Hello WORLD\r\n\r\n")
    assert subject_key(s) == "hello world"
    assert subject_key(analyze(b"\r\n")) == ""


def test_first_mailbox() -> None:
    s = analyze(b"From: Group: Joe <JOE@Example.COM>;\r\nTo: <>, b@x\r\nCc: undisclosed:;\r\n\r\n")
    assert first_mailbox(s) == "joe"
    assert first_mailbox(s, "to") == ""
    assert first_mailbox(s, "cc") == ""
    assert first_mailbox(analyze(b"\r\n")) == ""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: =?utf-8?q?J=C3=B6rg?= <j@x>", "Jörg"),
        ("From: Plain Name <p@x>", "Plain Name"),
        ('From: "  " <blank@x>', "blank@x"),
        ("From: bare@x", "bare@x"),
        ("From: <nohost>", "nohost"),
        ("From: Team: a@x;", "Team"),
        ("Subject: none", ""),
    ],
)
def test_display_name(header: str, expected: str) -> None:
    s = analyze(header.encode() + b"\r\n\r\n")
    assert display_name(s) == expected


def test_display_to_and_key() -> None:
    s = analyze(b"To: Zed ALPHA <z@x>\r\n\r\n")
    assert display_name(s, "to") == "Zed ALPHA"
    assert display_key(s, "to") == "zed alpha"


def test_message_ids() -> None:
    s = analyze(
        b"Message-ID: <id1@x>\r\nIn-Reply-To: Your message of Monday <p1@x> (comment) <p2@x>\r\n"
        b"References: <r1@x>\r\n <r2\r\n @x> junk <> <r3@x>\r\n\r\n"
    )
    assert message_id(s) == "id1@x"
    assert in_reply_to(s) == ["p1@x", "p2@x"]
    assert references(s) == ["r1@x", "r2@x", "r3@x"]
    assert thread_parents(s) == ["r1@x", "r2@x", "r3@x"]


def test_thread_parents_fall_back_to_in_reply_to() -> None:
    s = analyze(b"In-Reply-To: <a@x> <b@x>\r\nReferences: no ids here\r\n\r\n")
    assert thread_parents(s) == ["a@x"]
    assert thread_parents(analyze(b"\r\n")) == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Message-ID: bare@id", "bare@id"),
        ("Message-ID: two words", None),
        ("Message-ID:", None),
        ("Subject: none", None),
    ],
)
def test_message_id_without_brackets(header: str, expected: str | None) -> None:
    assert message_id(analyze(header.encode() + b"\r\n\r\n")) == expected


def test_msg_ids_edge_cases() -> None:
    assert msg_ids(None) == []
    assert msg_ids("") == []
    assert msg_ids("<a@b><c@d>") == ["a@b", "c@d"]
