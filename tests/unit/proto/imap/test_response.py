"""Response encoding: values (RFC 9051 §4), status responses (§7.1), codes, data helpers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap import response as r
from mailwright.proto.imap.response import Atom, Literal


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"NIL"),
        (0, b"0"),
        (4294967296, b"4294967296"),
        ("", b'""'),
        ("INBOX", b'"INBOX"'),
        (b"plain text", b'"plain text"'),
        ('a"b', b'{3}\r\na"b'),  # quotes go as a literal
        ("a\\b", b"{3}\r\na\\b"),
        ("Entwürfe", "{9}\r\nEntwürfe".encode()),  # 8-bit: literal
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        ("x" * r.QUOTED_MAX, b'"' + b"x" * r.QUOTED_MAX + b'"'),
        ("x" * (r.QUOTED_MAX + 1), b"{1025}\r\n" + b"x" * (r.QUOTED_MAX + 1)),
        (Atom("\\Seen"), b"\\Seen"),
        (Literal(b"abc"), b"{3}\r\nabc"),
        (Literal(b"\0\1", binary=True), b"~{2}\r\n\0\1"),
        ([], b"()"),
        ([Atom("\\Seen"), Atom("$Junk")], b"(\\Seen $Junk)"),
        ((1, None, ["a", (2,)]), b'(1 NIL ("a" (2)))'),
    ],
)
def test_encode(value: r.Value, wire: bytes) -> None:
    assert r.encode(value) == wire


@pytest.mark.parametrize("value", [True, -1, 1.5, object()])
def test_encode_refuses(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        r.encode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "a\r\n", "\u00fc", "a\x7f"])
def test_atom_checks(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        Atom(text)


def test_status_lines() -> None:
    assert r.tagged("a1", "OK", "LOGIN completed").to_bytes() == b"a1 OK LOGIN completed\r\n"
    assert r.tagged("a1", "NO", code=r.TRYCREATE).to_bytes() == b"a1 NO [TRYCREATE] Failed\r\n"
    assert r.tagged("a1", "BAD").to_bytes() == b"a1 BAD Invalid command\r\n"
    assert r.untagged_status("OK", "ready").to_bytes() == b"* OK ready\r\n"
    assert r.untagged_status("PREAUTH").to_bytes() == b"* PREAUTH Logged in\r\n"
    assert r.bye().to_bytes() == b"* BYE Logging out\r\n"
    assert r.untagged_status("OK", "Grüße").to_bytes() == "* OK Grüße\r\n".encode()
    code = r.UIDVALIDITY(3857529045)
    assert r.untagged_status("OK", "UIDs valid", code).to_bytes() == (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    )


@pytest.mark.parametrize(
    ("tag", "status", "text", "code"),
    [
        ("a1", "BYE", "x", None),  # BYE is never tagged
        ("a1", "PREAUTH", "x", None),
        (None, "DONE", "x", None),
        ("a+1", "OK", "x", None),  # "+" is no tag character
        ("", "OK", "x", None),
        ("a1", "OK", "two\r\nlines", None),
        ("a1", "OK", "nul\0", None),
        ("a1", "OK", "[looks like a code]", None),
    ],
)
def test_status_checks(tag: str | None, status: str, text: str, code: r.Code | None) -> None:
    with pytest.raises(LocalProtocolError):
        r.Status(tag, status, text, code)


def test_text_may_start_with_bracket_after_a_code() -> None:
    assert r.tagged("a", "OK", "[x]", r.ALERT).to_bytes() == b"a OK [ALERT] [x]\r\n"


@pytest.mark.parametrize(
    ("code", "wire"),
    [
        (r.READ_ONLY, b"[READ-ONLY]"),
        (r.UIDNEXT(4392), b"[UIDNEXT 4392]"),
        (r.APPENDUID(38505, 3955), b"[APPENDUID 38505 3955]"),
        (r.COPYUID(38505, "304,319:320", "3956:3958"), b"[COPYUID 38505 304,319:320 3956:3958]"),
        (r.BADCHARSET(list(r.SUPPORTED_CHARSETS)), b"[BADCHARSET (UTF-8 US-ASCII)]"),
        (r.PERMANENTFLAGS([Atom("\\Seen"), Atom("\\*")]), b"[PERMANENTFLAGS (\\Seen \\*)]"),
        (r.capability_code(["IMAP4rev1", "IDLE"]), b"[CAPABILITY IMAP4rev1 IDLE]"),
        (r.HIGHESTMODSEQ(715194045007), b"[HIGHESTMODSEQ 715194045007]"),
    ],
)
def test_codes(code: r.Code, wire: bytes) -> None:
    assert code.to_bytes() == wire


@pytest.mark.parametrize(
    "build",
    [
        lambda: r.Code("TWO WORDS"),
        lambda: r.Code("A]"),
        lambda: r.Code(""),
        lambda: r.UIDNEXT("x]"),
        lambda: r.UIDNEXT(Atom("x]")),
    ],
)
def test_code_checks(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        r.Code.to_bytes(build())  # type: ignore[operator]


def test_data_helpers() -> None:
    cases = [
        (r.capability(["IMAP4rev1", "IMAP4rev2"]), b"* CAPABILITY IMAP4rev1 IMAP4rev2\r\n"),
        (r.enabled(["CONDSTORE"]), b"* ENABLED CONDSTORE\r\n"),
        (r.exists(23), b"* 23 EXISTS\r\n"),
        (r.recent(1), b"* 1 RECENT\r\n"),
        (r.expunge(3), b"* 3 EXPUNGE\r\n"),
        (r.vanished("1:3,7"), b"* VANISHED 1:3,7\r\n"),
        (r.vanished("5", earlier=True), b"* VANISHED (EARLIER) 5\r\n"),
        (r.flags(["\\Seen", "\\Answered"]), b"* FLAGS (\\Seen \\Answered)\r\n"),
        (
            r.fetch(12, [("UID", 7), ("FLAGS", [Atom("\\Seen")]), ("BODY[]", b"x\r\n")]),
            b"* 12 FETCH (UID 7 FLAGS (\\Seen) BODY[] {3}\r\nx\r\n)\r\n",
        ),
        (
            r.list_mailbox(["\\HasNoChildren"], "/", "INBOX"),
            b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n',
        ),
        (r.list_mailbox([], None, "a", verb="LSUB"), b'* LSUB () NIL "a"\r\n'),
        (
            r.list_mailbox(["\\Subscribed"], "/", "x", [Atom("CHILDINFO"), [Atom("SUBSCRIBED")]]),
            b'* LIST (\\Subscribed) "/" "x" (CHILDINFO (SUBSCRIBED))\r\n',
        ),
        (
            r.status_data("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]),
            b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n',
        ),
        (r.search([2, 3, 6]), b"* SEARCH 2 3 6\r\n"),
        (r.search([]), b"* SEARCH\r\n"),
        (r.search([1], modseq=917162500), b"* SEARCH 1 (MODSEQ 917162500)\r\n"),
        (r.search([4, 2], verb="SORT"), b"* SORT 4 2\r\n"),
        (
            r.esearch("a1", True, [("MIN", 2), ("ALL", "2:4,7")]),
            b'* ESEARCH (TAG "a1") UID MIN 2 ALL 2:4,7\r\n',
        ),
        (r.esearch(None, False, [("COUNT", 0)]), b"* ESEARCH COUNT 0\r\n"),
        (r.namespace([("", "/")], None, None), b'* NAMESPACE (("" "/")) NIL NIL\r\n'),
        (
            r.id_response({"name": "mailwright", "os": None}),
            b'* ID ("name" "mailwright" "os" NIL)\r\n',
        ),
        (r.id_response(None), b"* ID NIL\r\n"),
        (r.quota("", [("STORAGE", 10, 512)]), b'* QUOTA "" (STORAGE 10 512)\r\n'),
        (r.quotaroot("INBOX", [""]), b'* QUOTAROOT "INBOX" ""\r\n'),
        (r.untagged(Atom("OK"), 1), b"* OK 1\r\n"),
    ]
    for resp, wire in cases:
        assert resp.to_bytes() == wire


def test_data_needs_values() -> None:
    with pytest.raises(LocalProtocolError):
        r.untagged()


def test_thread() -> None:
    # RFC 5256 §4's example
    threads = [[2], [3, 6, [4, 23], [44, 7, 96]]]
    assert r.thread(threads).to_bytes() == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert r.thread([]).to_bytes() == b"* THREAD\r\n"
    # A thread whose root is missing (RFC 5256 §3 REFERENCES' dummy): only sub-threads.
    nested = [[[3], [5, 6]], [1, [[2], [4]], [7]]]
    assert r.thread(nested).to_bytes() == b"* THREAD ((3)(5 6))(1 ((2)(4))(7))\r\n"
    with pytest.raises(LocalProtocolError):
        r.thread([[0]])
    with pytest.raises(LocalProtocolError):
        r.thread([[]])
    with pytest.raises(LocalProtocolError):
        r.thread([[[1]]])  # thread-nested is 2*thread-list
    with pytest.raises(LocalProtocolError):
        r.thread([[1, [2]]])
    with pytest.raises(LocalProtocolError):
        r.thread([[1, [2], [3], 4]])


def test_thread_nesting_deeper_than_the_recursion_limit() -> None:
    depth = 5000
    thread: list[object] = [depth + 1]
    for n in range(depth, 0, -1):
        thread = [n, thread, [n + 10_000]]
    encoded = r.thread([thread]).to_bytes()  # type: ignore[list-item]
    assert encoded.startswith(b"* THREAD (1 (2 (3 ") and encoded.endswith(b"(10001))\r\n")
    assert encoded.count(b"(") == encoded.count(b")") == 2 * depth + 1


def test_encoded_checks() -> None:
    with pytest.raises(LocalProtocolError):
        r.Encoded(b"a OK x\r\n")
    with pytest.raises(LocalProtocolError):
        r.Encoded(b"* OK x")


def test_continuations() -> None:
    assert r.continuation().to_bytes() == b"+ \r\n"
    assert r.continuation("idling").to_bytes() == b"+ idling\r\n"
    assert r.continuation(b"dGVzdA==").to_bytes() == b"+ dGVzdA==\r\n"
    with pytest.raises(LocalProtocolError):
        r.continuation("a\r\nb")
    with pytest.raises(LocalProtocolError):
        r.continuation(b"a\nb")


def test_format_datetime() -> None:
    when = datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))
    assert r.format_datetime(when) == "17-Jul-1996 02:44:25 -0700"
    assert r.format_datetime(datetime(2024, 2, 1, 9, 5, 0)) == "01-Feb-2024 09:05:00 +0000"
    east = datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert r.format_datetime(east) == "31-Dec-2024 23:59:59 +0530"


def test_fetch_literal_pieces() -> None:
    head = r.fetch_literal_head(1, [("UID", 5)], "BODY[]", 3)
    assert head == b"* 1 FETCH (UID 5 BODY[] {3}\r\n"
    assert (
        r.fetch_literal_head(2, [], "BINARY[1]", 0, binary=True) == b"* 2 FETCH (BINARY[1] ~{0}\r\n"
    )
    assert r.fetch_literal_tail() == b")\r\n"
    assert r.fetch_literal_tail([("FLAGS", [Atom("\\Seen")])]) == b" FLAGS (\\Seen))\r\n"


class _Adjacent(list):  # type: ignore[type-arg]
    run = 2


def test_adjacent_lists_have_no_space_between_them() -> None:
    # RFC 9051 §9: a multipart's bodies and an address list's addresses are adjacent.
    value = _Adjacent([["a"], ["b"], "MIXED"])
    assert r.encode(value) == b'(("a")("b") "MIXED")'
