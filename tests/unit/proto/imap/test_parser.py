"""The command grammar (RFC 9051 §9 and extensions), through the machine's framing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mailwright.proto.imap import command as c
from mailwright.proto.imap import parser
from mailwright.proto.imap import response as r
from mailwright.proto.imap.events import Event, Invalid
from mailwright.proto.imap.numset import SequenceSet
from mailwright.proto.imap.server import Limits
from mailwright.proto.imap.state import Verb
from tests.unit.proto.imap.helpers import LOGIN, SELECT, invalid, one, run

S = SequenceSet.parse


def parsed(line: bytes, setup: bytes = SELECT, limits: Limits | None = None) -> Event:
    event = one(line, setup, limits)
    assert not isinstance(event, c.Append)
    return event


def bad_text(line: bytes, setup: bytes = SELECT) -> str:
    event = invalid(line, setup)
    assert event.response.status == "BAD", event
    return event.response.text


# -- tag and verb ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "result"),
    [
        (b"a1 NOOP", parser.Start("a1", Verb.NOOP, 7)),
        (b"A.1] noop", parser.Start("A.1]", Verb.NOOP, 9)),
        (b"x uid fetch 1 UID", parser.Start("x", Verb.UID_FETCH, 11)),
        (b"", parser.BadStart(None, "Missing tag")),
        (b" NOOP", parser.BadStart(None, "Missing tag")),
        (b"a+ NOOP", parser.BadStart(None, "Invalid tag")),
        (b"a(1 NOOP", parser.BadStart(None, "Invalid tag")),
        (b"a\xff NOOP", parser.BadStart(None, "Invalid tag")),
        (b"a1", parser.BadStart("a1", "Missing command")),
        (b"a1 ", parser.BadStart("a1", "Missing command")),
        (b"a1 (", parser.BadStart("a1", "Missing command")),
        (b"a1 FOO", parser.BadStart("a1", "Unknown command FOO")),
        (
            b"a1 UID",
            parser.BadStart("a1", "UID needs a command: COPY, MOVE, FETCH, STORE, SEARCH, ..."),
        ),
        (b"a1 UID LOGIN x", parser.BadStart("a1", "Unknown command UID LOGIN")),
        (b"a1 UID  FETCH", parser.BadStart("a1", "Unknown command UID")),
        (b"a1 " + b"X" * 60, parser.BadStart("a1", "Unknown command " + "X" * 40)),
        ("a1 NO\u017fP".encode(), parser.BadStart("a1", "Unknown command NO")),
    ],
)
def test_parse_start(line: bytes, result: object) -> None:
    assert parser.parse_start(line) == result


def test_tag_of() -> None:
    assert parser.tag_of(b"a1 FOO bar") == "a1"
    assert parser.tag_of(b"a{1 FOO") is None


# -- simple commands --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "setup", "event"),
    [
        (b"a CAPABILITY\r\n", b"", c.Capability("a")),
        (b"a capability\r\n", b"", c.Capability("a")),
        (b"a NOOP\r\n", SELECT, c.Noop("a")),
        (b"a STARTTLS\r\n", b"", c.StartTls("a")),
        (b"a NAMESPACE\r\n", LOGIN, c.Namespace("a")),
        (b"a IDLE\r\n", LOGIN, c.Idle("a")),
        (b"a CHECK\r\n", SELECT, c.Check("a")),
        (b"a CLOSE\r\n", SELECT, c.Close("a")),
        (b"a UNSELECT\r\n", SELECT, c.Unselect("a")),
        (b"a EXPUNGE\r\n", SELECT, c.Expunge("a")),
        (b"a UID EXPUNGE 1:3\r\n", SELECT, c.Expunge("a", S("1:3"))),
        (b"a COMPRESS deflate\r\n", LOGIN, c.Compress("a", "DEFLATE")),
        (b'a GETQUOTA ""\r\n', LOGIN, c.GetQuota("a", "")),
        (b"a GETQUOTAROOT inbox\r\n", LOGIN, c.GetQuotaRoot("a", "INBOX")),
        (
            b'a SETQUOTA "" (STORAGE 512 message 1000)\r\n',
            LOGIN,
            c.SetQuota("a", "", (("STORAGE", 512), ("MESSAGE", 1000))),
        ),
        (b"a SETQUOTA x ()\r\n", LOGIN, c.SetQuota("a", "x", ())),
        (b"a ENABLE CONDSTORE qresync\r\n", LOGIN, c.Enable("a", ("CONDSTORE", "QRESYNC"))),
    ],
)
def test_simple_commands(line: bytes, setup: bytes, event: Event) -> None:
    assert parsed(line, setup) == event


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"a LOGIN alice secret\r\n", c.Login("a", "alice", "secret")),
        (
            b'a LOGIN "alice@example.test" "pa ss\\"w\\\\d"\r\n',
            c.Login("a", "alice@example.test", 'pa ss"w\\d'),
        ),
        ('a LOGIN "jörg" "pässwörd"\r\n'.encode(), c.Login("a", "jörg", "pässwörd")),
        (b'a LOGIN "" ""\r\n', c.Login("a", "", "")),
        (b"a AUTHENTICATE plain\r\n", c.Authenticate("a", "PLAIN")),
        (
            b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            c.Authenticate("a", "PLAIN", b"AGFsaWNlAHNlY3JldA=="),
        ),
        (b"a AUTHENTICATE PLAIN =\r\n", c.Authenticate("a", "PLAIN", b"=")),
        (b"a AUTHENTICATE X-OAUTH_2 YWJj\r\n", c.Authenticate("a", "X-OAUTH_2", b"YWJj")),
        (b"a ID NIL\r\n", c.Id("a", None)),
        (b"a ID nil\r\n", c.Id("a", None)),
        (b"a ID ()\r\n", c.Id("a", {})),
        (
            b'a ID ("name" "Thunderbird" "version" NIL)\r\n',
            c.Id("a", {"name": "Thunderbird", "version": None}),
        ),
        (b'a ID ("nil" "NILS")\r\n', c.Id("a", {"nil": "NILS"})),
    ],
)
def test_before_login(line: bytes, event: Event) -> None:
    assert parsed(line, b"") == event


def test_secrets_not_in_repr() -> None:
    assert "hunter2" not in repr(c.Login("a", "alice", "hunter2"))
    assert "aHVudGVy" not in repr(c.Authenticate("a", "PLAIN", b"aHVudGVy"))


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (
            b"a LOGIN alice\r\n",
            "Syntax error in LOGIN: expected a space, found the end of the line",
        ),
        (b"a LOGIN alice (\r\n", "Syntax error in LOGIN: expected a string at '('"),
        (b'a LOGIN alice "sec\r\n', "Syntax error in LOGIN: unterminated quoted string"),
        (b'a LOGIN alice "s\\x"\r\n', "Syntax error in LOGIN: invalid escape in a quoted string"),
        (b'a LOGIN alice "s\\\r\n', "Syntax error in LOGIN: invalid escape in a quoted string"),
        (b'a LOGIN "\xff" x\r\n', "Syntax error in LOGIN: the user name is not valid UTF-8"),
        (b"a LOGIN a b c\r\n", "Syntax error in LOGIN: unexpected argument at ' c'"),
        (b"a LOGIN  a b\r\n", "Syntax error in LOGIN: expected a string at ' a b'"),
        (b"a NOOP x\r\n", "Syntax error in NOOP: unexpected argument at ' x'"),
        (b"a NOOP \r\n", "Syntax error in NOOP: unexpected argument at ' '"),
        (
            b"a AUTHENTICATE\r\n",
            "Syntax error in AUTHENTICATE: expected a space, found the end of the line",
        ),
        (b"a AUTHENTICATE PL@IN\r\n", "Syntax error in AUTHENTICATE: invalid SASL mechanism name"),
        (
            b"a AUTHENTICATE " + b"M" * 21 + b"\r\n",
            "Syntax error in AUTHENTICATE: invalid SASL mechanism name",
        ),
        (
            b"a AUTHENTICATE PLAIN ab!\r\n",
            "Syntax error in AUTHENTICATE: the initial response is not base64",
        ),
        (
            b"a AUTHENTICATE PLAIN abc\r\n",
            "Syntax error in AUTHENTICATE: the initial response is not base64",
        ),
        (
            b"a AUTHENTICATE PLAIN \r\n",
            "Syntax error in AUTHENTICATE: the initial response is not base64",
        ),
        (b"a ID\r\n", "Syntax error in ID: expected a space, found the end of the line"),
        (b'a ID "x"\r\n', "Syntax error in ID: expected a parameter list or NIL"),
        (b"a ID (x y)\r\n", "Syntax error in ID: expected a string at 'x y)'"),
        (b'a ID ("a" "b"\r\n', "Syntax error in ID: expected ')', found the end of the line"),
        (
            b'a ID ("' + b"k" * 31 + b'" NIL)\r\n',
            "Syntax error in ID: ID field or value too long (RFC 2971 §3.3)",
        ),
        (
            b'a ID ("k" "' + b"v" * 1025 + b'")\r\n',
            "Syntax error in ID: ID field or value too long (RFC 2971 §3.3)",
        ),
        (b'a ID ("a\\\\" "b\\"")\r\n', None),
    ],
)
def test_before_login_errors(line: bytes, text: str | None) -> None:
    if text is None:
        assert parsed(line, b"") == c.Id("a", {"a\\": 'b"'})
    else:
        assert bad_text(line, b"") == text


def test_id_pairs_limit() -> None:
    pairs = b" ".join(b'"k%d" "v"' % i for i in range(30))
    assert isinstance(parsed(b"a ID (" + pairs + b")\r\n", b""), c.Id)
    pairs += b' "k30" "v"'
    assert "more than 30 ID fields" in bad_text(b"a ID (" + pairs + b")\r\n", b"")


# -- mailboxes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"a SELECT INBOX\r\n", c.Select("a", "INBOX")),
        (b"a SELECT inBox\r\n", c.Select("a", "INBOX")),
        (b"a SELECT inbox/sub\r\n", c.Select("a", "inbox/sub")),
        (b'a SELECT "Sent Items"\r\n', c.Select("a", "Sent Items")),
        ("a SELECT Entwürfe\r\n".encode(), c.Select("a", "Entwürfe")),
        (b"a SELECT Entw&APw-rfe\r\n", c.Select("a", "Entw&APw-rfe")),
        (b"a SELECT a]b\r\n", c.Select("a", "a]b")),
        (b"a EXAMINE INBOX (CONDSTORE)\r\n", c.Examine("a", "INBOX", condstore=True)),
        (
            b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
            c.Select(
                "a",
                "INBOX",
                qresync=c.QresyncParams(67890007, 20050715194045000, S("41,43:211,214:541")),
            ),
        ),
        (
            b"a SELECT INBOX (QRESYNC (1 2 1:9 (1,5 10,50)) CONDSTORE)\r\n",
            c.Select("a", "INBOX", True, c.QresyncParams(1, 2, S("1:9"), (S("1,5"), S("10,50")))),
        ),
        (
            b"a EXAMINE INBOX (QRESYNC (1 2))\r\n",
            c.Examine("a", "INBOX", qresync=c.QresyncParams(1, 2)),
        ),
        (
            b"a SELECT INBOX (QRESYNC (1 0 (1 10)))\r\n",
            c.Select("a", "INBOX", qresync=c.QresyncParams(1, 0, None, (S("1"), S("10")))),
        ),
        (b"a CREATE foo\r\n", c.Create("a", "foo")),
        (b"a CREATE Drafts (USE (\\Drafts))\r\n", c.Create("a", "Drafts", ("\\Drafts",))),
        (b"a CREATE x (use (\\Sent \\Archive))\r\n", c.Create("a", "x", ("\\Sent", "\\Archive"))),
        (b"a DELETE foo\r\n", c.Delete("a", "foo")),
        (b"a RENAME foo bar\r\n", c.Rename("a", "foo", "bar")),
        (b"a SUBSCRIBE foo\r\n", c.Subscribe("a", "foo")),
        (b"a UNSUBSCRIBE foo\r\n", c.Unsubscribe("a", "foo")),
        (b'a LIST "" *\r\n', c.List("a", "", ("*",))),
        (b'a LIST "" %\r\n', c.List("a", "", ("%",))),
        (b"a LIST ~/Mail/ %/a*]\r\n", c.List("a", "~/Mail/", ("%/a*]",))),
        (b'a LIST "" "foo bar"\r\n', c.List("a", "", ("foo bar",))),
        (b'a LIST "" ("INBOX" Drafts)\r\n', c.List("a", "", ("INBOX", "Drafts"), extended=True)),
        (
            b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (CHILDREN)\r\n',
            c.List(
                "a",
                "",
                ("%",),
                frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
                frozenset({"CHILDREN"}),
                (),
                True,
            ),
        ),
        (b'a LIST () "" %\r\n', c.List("a", "", ("%",), extended=True)),
        (b'a LIST "" % RETURN ()\r\n', c.List("a", "", ("%",), extended=True)),
        (
            b'a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES unseen) subscribed special-use)\r\n',
            c.List(
                "a",
                "",
                ("%",),
                frozenset(),
                frozenset({"SPECIAL-USE", "STATUS", "SUBSCRIBED"}),
                ("MESSAGES", "UNSEEN"),
                True,
            ),
        ),
        (b'a LSUB "" *\r\n', c.Lsub("a", "", "*")),
        (
            b"a STATUS inbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)\r\n",
            c.Status(
                "a",
                "INBOX",
                (
                    "MESSAGES",
                    "UIDNEXT",
                    "UIDVALIDITY",
                    "UNSEEN",
                    "RECENT",
                    "DELETED",
                    "SIZE",
                    "HIGHESTMODSEQ",
                    "APPENDLIMIT",
                ),
            ),
        ),
    ],
)
def test_mailbox_commands(line: bytes, event: Event) -> None:
    assert parsed(line, LOGIN) == event


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"a SELECT\r\n", "expected a space"),
        (b"a SELECT \r\n", "expected a string, found the end of the line"),
        (b'a SELECT "a\x00b"\r\n', "invalid character in a quoted string"),
        (b"a SELECT \xff\r\n", "the mailbox name is not valid UTF-8"),
        (b"a SELECT INBOX ()\r\n", "expected a SELECT parameter at ')'"),
        (b"a SELECT INBOX (FOO)\r\n", "unknown SELECT parameter FOO"),
        (b"a SELECT INBOX CONDSTORE\r\n", "expected '(' before SELECT parameters"),
        (b"a SELECT INBOX (CONDSTORE\r\n", "expected ')'"),
        (b"a SELECT INBOX (QRESYNC (0 1))\r\n", "expected a UIDVALIDITY without a leading zero"),
        (b"a SELECT INBOX (QRESYNC (1 x))\r\n", "expected a mod-sequence at 'x))'"),
        (b"a SELECT INBOX (QRESYNC (1 1 1:*))\r\n", "known UIDs may not hold '*' or '$'"),
        (b"a SELECT INBOX (QRESYNC (1 1 $))\r\n", "known UIDs may not hold '*' or '$'"),
        (b"a SELECT INBOX (QRESYNC (1 1 1 (1)))\r\n", "expected a space at ')))'"),
        (b"a SELECT INBOX (QRESYNC 1)\r\n", "expected '(' before QRESYNC parameters"),
        (b"a SELECT INBOX (QRESYNC (1 9223372036854775808))\r\n", "a mod-sequence out of range"),
        (b"a CREATE x (FOO (\\Sent))\r\n", "the only CREATE parameter is USE"),
        (b"a CREATE x (USE ())\r\n", "expected a flag at '))'"),
        (b"a CREATE x (USE \\Sent)\r\n", "expected '(' before special-use attributes"),
        (b"a RENAME foo\r\n", "expected a space"),
        (b'a RENAME "a\r" b\r\n', "invalid character in a quoted string"),
        (b"a LIST\r\n", "expected a space"),
        (b'a LIST "" \r\n', "expected a mailbox pattern, found the end of the line"),
        (b'a LIST (FOO) "" %\r\n', "unknown LIST selection option FOO"),
        (b'a LIST (RECURSIVEMATCH) "" %\r\n', "RECURSIVEMATCH needs another selection option"),
        (
            b'a LIST (REMOTE RECURSIVEMATCH) "" %\r\n',
            "RECURSIVEMATCH needs another selection option",
        ),
        (b'a LIST "" % RETURN (FOO)\r\n', "unknown LIST return option FOO"),
        (b'a LIST "" % RETURN (STATUS (FOO))\r\n', "unknown STATUS item FOO"),
        (b'a LIST "" % RETURN (STATUS ())\r\n', "expected a STATUS item at '))'"),
        (b'a LIST "" % FOO ()\r\n', "expected RETURN"),
        (b'a LIST "" % RETURN CHILDREN\r\n', "expected '(' before LIST return options"),
        (b'a LIST "" % RETURN (CHILDREN\r\n', "expected ')'"),
        (b'a LIST "" ()\r\n', "expected a mailbox pattern at ')'"),
        (b"a LIST (SUBSCRIBED\r\n", "expected ')'"),
        (b'a LIST "" "\xff"\r\n', "the mailbox pattern is not valid UTF-8"),
        (b'a LSUB ""\r\n', "expected a space"),
        (b"a STATUS INBOX ()\r\n", "expected a STATUS item at ')'"),
        (b"a STATUS INBOX (MESSAGES\r\n", "expected ')'"),
        (b"a STATUS INBOX MESSAGES\r\n", "expected '(' before STATUS items"),
        (b"a STATUS INBOX (\xc3\xa4)\r\n", "expected a STATUS item at"),
        (b"a ENABLE\r\n", "expected a space"),
        (b"a ENABLE (\r\n", "expected a capability at '('"),
        (b"a COMPRESS LZMA\r\n", "unsupported compression mechanism LZMA"),
        (b"a SETQUOTA x (STORAGE)\r\n", "expected a space at ')'"),
        (b"a SETQUOTA x (STORAGE 1\r\n", "expected ')'"),
        (b"a SETQUOTA x STORAGE\r\n", "expected '(' before quota resources"),
        (b"a GETQUOTA\r\n", "expected a space"),
        (b"a APPEND INBOX\r\n", "APPEND needs the message as a literal"),
        (b'a APPEND INBOX "msg"\r\n', "APPEND needs the message as a literal"),
    ],
)
def test_mailbox_errors(line: bytes, text: str) -> None:
    assert text in bad_text(line, LOGIN)


# -- SEARCH -------------------------------------------------------------------------------------


def search_key(criteria: bytes) -> c.SearchKey:
    event = run(SELECT + b"a SEARCH " + criteria + b"\r\n").events[-1]
    assert isinstance(event, c.Search), event
    return event.key


@pytest.mark.parametrize(
    ("criteria", "key"),
    [
        (b"ALL", c.All()),
        (b"new", c.New()),
        (b"OLD", c.Old()),
        (b"RECENT", c.Recent()),
        (b"ANSWERED", c.FlagKey("\\Answered")),
        (b"UNSEEN", c.FlagKey("\\Seen", present=False)),
        (
            b"DELETED UNDELETED DRAFT UNDRAFT FLAGGED UNFLAGGED SEEN UNANSWERED",
            c.And(
                (
                    c.FlagKey("\\Deleted"),
                    c.FlagKey("\\Deleted", False),
                    c.FlagKey("\\Draft"),
                    c.FlagKey("\\Draft", False),
                    c.FlagKey("\\Flagged"),
                    c.FlagKey("\\Flagged", False),
                    c.FlagKey("\\Seen"),
                    c.FlagKey("\\Answered", False),
                )
            ),
        ),
        (b"KEYWORD $Junk", c.Keyword("$Junk")),
        (b"UNKEYWORD \\Seen", c.Unkeyword("\\Seen")),
        (b"FROM alice", c.Header("from", "alice")),
        (b'TO "bob smith"', c.Header("to", "bob smith")),
        (b"CC x BCC y", c.And((c.Header("cc", "x"), c.Header("bcc", "y")))),
        (b"SUBJECT {3}\r\nab\n", c.Header("subject", "ab\n")),
        (b'SUBJECT ""', c.Header("subject", "")),
        (b"HEADER X-Spam-Flag YES", c.Header("x-spam-flag", "YES")),
        (b'HEADER "Message-ID" "<a@b>"', c.Header("message-id", "<a@b>")),
        (b"BODY hello", c.Body("hello")),
        ("TEXT grüße".encode(), c.Text("grüße")),
        (b"BEFORE 1-Feb-2024", c.Before(date(2024, 2, 1))),
        (b'ON "01-feb-2024"', c.On(date(2024, 2, 1))),
        (b"SINCE 29-Feb-2024", c.Since(date(2024, 2, 29))),
        (b"SENTBEFORE 1-Jan-2000", c.SentBefore(date(2000, 1, 1))),
        (b"SENTON 1-Jan-2000", c.SentOn(date(2000, 1, 1))),
        (b"SENTSINCE 1-Jan-2000", c.SentSince(date(2000, 1, 1))),
        (b"LARGER 1000 SMALLER 9223372036854775807", c.And((c.Larger(1000), c.Smaller(2**63 - 1)))),
        (b"UID 1:*", c.UidKey(S("1:*"))),
        (b"1,3:5", c.SeqKey(S("1,3:5"))),
        (b"*", c.SeqKey(S("*"))),
        (b"$", c.SeqKey(S("$"))),
        (b"UID $", c.UidKey(S("$"))),
        (b"NOT SEEN", c.Not(c.FlagKey("\\Seen"))),
        (b"NOT NOT SEEN", c.Not(c.Not(c.FlagKey("\\Seen")))),
        (b"OR SEEN FLAGGED", c.Or((c.FlagKey("\\Seen"), c.FlagKey("\\Flagged")))),
        (
            b"OR SEEN OR FLAGGED DRAFT",
            c.Or((c.FlagKey("\\Seen"), c.FlagKey("\\Flagged"), c.FlagKey("\\Draft"))),
        ),
        (
            b"OR OR SEEN FLAGGED DRAFT",
            c.Or((c.FlagKey("\\Seen"), c.FlagKey("\\Flagged"), c.FlagKey("\\Draft"))),
        ),
        (b"OR (SEEN FLAGGED) ORDER", None),
        (b"(SEEN)", c.FlagKey("\\Seen")),
        (
            b"(SEEN FLAGGED) 1",
            c.And((c.And((c.FlagKey("\\Seen"), c.FlagKey("\\Flagged"))), c.SeqKey(S("1")))),
        ),
        (b"MODSEQ 620162338", c.ModSeqKey(620162338)),
        (b'MODSEQ "/flags/\\\\draft" all 620162338', c.ModSeqKey(620162338, "\\draft", "all")),
        (b'MODSEQ "/FLAGS/$Junk" PRIV 0', c.ModSeqKey(0, "$Junk", "priv")),
    ],
)
def test_search_keys(criteria: bytes, key: c.SearchKey | None) -> None:
    if key is None:
        assert "unknown search key ORDER" in bad_text(b"a SEARCH " + criteria + b"\r\n")
    else:
        assert search_key(criteria) == key


@pytest.mark.parametrize(
    ("literal", "text"),
    [(b"a\0b", "NUL in the mailbox name"), (b"a\r\nb", "CR or LF in the mailbox name")],
)
def test_literal_names_checked(literal: bytes, text: str) -> None:
    d = run(LOGIN + b"a SELECT {%d+}\r\n" % len(literal) + literal + b"\r\n")
    event = d.events[-1]
    assert isinstance(event, Invalid) and text in event.response.text


def test_long_or_chain_is_flat() -> None:
    chain = b"OR FROM a " * 100 + b"FROM z"
    key = search_key(chain)
    assert isinstance(key, c.Or) and len(key.keys) == 101


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"a SEARCH CHARSET UTF-8 ALL\r\n", c.Search("a", False, "UTF-8", c.All())),
        (b"a SEARCH charset us-ascii ALL\r\n", c.Search("a", False, "US-ASCII", c.All())),
        (
            b"a UID SEARCH RETURN (MIN MAX) ALL\r\n",
            c.Search("a", True, None, c.All(), ("MIN", "MAX")),
        ),
        (b"a SEARCH RETURN () ALL\r\n", c.Search("a", False, None, c.All(), ())),
        (
            b"a SEARCH RETURN (SAVE ALL COUNT ALL) CHARSET UTF-8 SEEN\r\n",
            c.Search("a", False, "UTF-8", c.FlagKey("\\Seen"), ("SAVE", "ALL", "COUNT")),
        ),
        (
            b"a UID SORT (REVERSE DATE subject) UTF-8 ALL\r\n",
            c.Sort(
                "a",
                True,
                (c.SortCriterion("DATE", True), c.SortCriterion("SUBJECT")),
                "UTF-8",
                c.All(),
            ),
        ),
        (
            b"a SORT RETURN (MIN) (ARRIVAL) US-ASCII SEEN\r\n",
            c.Sort(
                "a", False, (c.SortCriterion("ARRIVAL"),), "US-ASCII", c.FlagKey("\\Seen"), ("MIN",)
            ),
        ),
        (
            b"a THREAD REFERENCES UTF-8 ALL\r\n",
            c.Thread("a", False, "REFERENCES", "UTF-8", c.All()),
        ),
        (
            b"a UID THREAD orderedsubject UTF-8 1:*\r\n",
            c.Thread("a", True, "ORDEREDSUBJECT", "UTF-8", c.SeqKey(S("1:*"))),
        ),
    ],
)
def test_search_commands(line: bytes, event: Event) -> None:
    assert parsed(line) == event


@pytest.mark.parametrize(
    ("criteria", "text"),
    [
        (b"", "expected a search key, found the end of the line"),
        (b"FOO", "unknown search key FOO"),
        (b"(SEEN", "expected ')'"),
        (b"()", "expected a search key at ')'"),
        (b"FROM", "expected a space, found the end of the line"),
        (b"FROM \xff", "the search text is not valid UTF-8"),
        (b"BEFORE 2024-02-01", "expected a date like 1-Feb-2024"),
        (b"BEFORE 1-Foo-2024", "expected a date like 1-Feb-2024"),
        (b"BEFORE 30-Feb-2024", "no such date"),
        (b'BEFORE "1-Feb-2024', "expected '\"'"),
        (b"LARGER x", "expected a number at 'x'"),
        (b"LARGER 9223372036854775808", "a number out of range"),
        (b"UID x", "expected a sequence set at 'x'"),
        (b"UID 0", "invalid sequence set"),
        (b"HEADER a:b x", "invalid header field name"),
        (b'HEADER "" x', "invalid header field name"),
        (b"KEYWORD", "expected a space"),
        (b"KEYWORD (", "expected a flag at '('"),
        (b"KEYWORD \xc3\xa4", "a flag is US-ASCII"),
        (b"NOT", "expected a space"),
        (b"OR SEEN", "expected a space, found the end of the line"),
        (b'MODSEQ "/other/x" all 1', 'the MODSEQ entry name is "/flags/<flag>"'),
        (b'MODSEQ "/flags/" all 1', 'the MODSEQ entry name is "/flags/<flag>"'),
        (b'MODSEQ "/flags/x" none 1', "the MODSEQ entry type is priv, shared or all"),
        (b"\xc3\xa4", "expected a search key"),
        (b"RETURN (FOO) ALL", "unknown RETURN option FOO"),
        (b"RETURN (MIN)ALL", "expected a space at 'ALL'"),
        (b"CHARSET UTF-8", "expected a space"),
    ],
)
def test_search_errors(criteria: bytes, text: str) -> None:
    assert text in bad_text(b"a SEARCH " + criteria + b"\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH CHARSET ISO-8859-1 ALL\r\n",
        b"a SORT (DATE) KOI8-R ALL\r\n",
        b"a THREAD REFERENCES {5}\r\nlatin ALL\r\n",
    ],
)
def test_unsupported_charset(line: bytes) -> None:
    # RFC 9051 §6.4.4: NO [BADCHARSET (supported charsets)]
    event = run(SELECT + line).events[-1]
    assert isinstance(event, Invalid)
    assert event.response == r.tagged(
        "a", "NO", "Unsupported charset", r.BADCHARSET(["UTF-8", "US-ASCII"])
    )


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"a SORT DATE UTF-8 ALL\r\n", "expected '(' before the sort criteria"),
        (b"a SORT () UTF-8 ALL\r\n", "expected a sort key at ') UTF"),
        (b"a SORT (FOO) UTF-8 ALL\r\n", "unknown sort key FOO"),
        (b"a SORT (REVERSE) UTF-8 ALL\r\n", "expected a space at ') UTF"),
        (b"a SORT (DATE UTF-8 ALL\r\n", "unknown sort key UTF-8"),
        (b"a SORT (DATE) ALL\r\n", None),
        (b"a THREAD FOO UTF-8 ALL\r\n", "unsupported threading algorithm FOO"),
        (b"a THREAD REFERENCES UTF-8\r\n", "expected a space"),
    ],
)
def test_sort_thread_errors(line: bytes, text: str | None) -> None:
    event = invalid(line, SELECT)
    if text is None:
        assert event.response.status == "NO"  # "ALL" is no charset
    else:
        assert text in event.response.text


def test_nesting_limit() -> None:
    limits = Limits(max_nesting=4)
    assert isinstance(parsed(b"a SEARCH ((((SEEN))))\r\n", limits=limits), c.Search)
    assert isinstance(parsed(b"a SEARCH NOT NOT NOT NOT SEEN\r\n", limits=limits), c.Search)
    for deep in (b"(((((SEEN)))))", b"NOT " * 5 + b"SEEN", b"OR " * 5 + b"SEEN " * 6):
        event = invalid(b"a SEARCH " + deep + b"\r\n", SELECT + b"", limits)
        assert "nested more than 4 levels deep" in event.response.text


def test_deep_nesting_at_default_limit_never_recurses_far() -> None:
    event = invalid(b"a SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000 + b"\r\n", SELECT)
    assert "nested more than 16 levels deep" in event.response.text
    event = invalid(b"a SEARCH " + b"NOT " * 5000 + b"ALL\r\n", SELECT)
    assert "nested more than 16 levels deep" in event.response.text


# -- FETCH --------------------------------------------------------------------------------------


def fetch_items(spec: bytes) -> tuple[c.FetchItem, ...]:
    event = parsed(b"a FETCH 1 " + spec + b"\r\n")
    assert isinstance(event, c.Fetch), event
    return event.items


@pytest.mark.parametrize(
    ("spec", "items", "names"),
    [
        (b"FLAGS", (c.Flags(),), ["FLAGS"]),
        (b"ALL", c.ALL, ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
        (b"fast", c.FAST, ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
        (b"FULL", c.FULL, ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
        (
            b"(UID MODSEQ BODYSTRUCTURE BODY)",
            (c.Uid(), c.ModSeq(), c.BodyStructure(), c.BodyStructure(False)),
            ["UID", "MODSEQ", "BODYSTRUCTURE", "BODY"],
        ),
        (
            b"(RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE)",
            (c.Rfc822(), c.Rfc822Header(), c.Rfc822Text(), c.Rfc822Size()),
            ["RFC822", "RFC822.HEADER", "RFC822.TEXT", "RFC822.SIZE"],
        ),
        (b"(FLAGS UID FLAGS)", (c.Flags(), c.Uid()), ["FLAGS", "UID"]),
        (b"BODY[]", (c.BodySection(),), ["BODY[]"]),
        (b"BODY.PEEK[]<0.2048>", (c.BodySection(partial=(0, 2048), peek=True),), ["BODY[]<0>"]),
        (
            b"body[text]<100.5>",
            (c.BodySection(text="TEXT", partial=(100, 5)),),
            ["BODY[TEXT]<100>"],
        ),
        (b"BODY[HEADER]", (c.BodySection(text="HEADER"),), ["BODY[HEADER]"]),
        (
            b'BODY.PEEK[HEADER.FIELDS (From To "X(y")]',
            (c.BodySection(text="HEADER.FIELDS", fields=("From", "To", "X(y"), peek=True),),
            ['BODY[HEADER.FIELDS (From To "X(y")]'],
        ),
        (
            b"BODY[1.2.HEADER.FIELDS.NOT (Received)]<0>",
            None,
            None,
        ),
        (b"BODY[1.2.3]", (c.BodySection(part=(1, 2, 3)),), ["BODY[1.2.3]"]),
        (b"BODY[2.MIME]", (c.BodySection(part=(2,), text="MIME"),), ["BODY[2.MIME]"]),
        (b"BODY[4.TEXT]", (c.BodySection(part=(4,), text="TEXT"),), ["BODY[4.TEXT]"]),
        (b"BINARY[]", (c.Binary(),), ["BINARY[]"]),
        (b"BINARY.PEEK[1.2]<0.10>", (c.Binary((1, 2), (0, 10), peek=True),), ["BINARY[1.2]<0>"]),
        (b"BINARY.SIZE[1]", (c.BinarySize((1,)),), ["BINARY.SIZE[1]"]),
        (b"BINARY.SIZE[]", (c.BinarySize(),), ["BINARY.SIZE[]"]),
    ],
)
def test_fetch_items(
    spec: bytes, items: tuple[c.FetchItem, ...] | None, names: list[str] | None
) -> None:
    if items is None:
        assert "expected '.' at '>'" in bad_text(b"a FETCH 1 " + spec + b"\r\n")
        return
    got = fetch_items(spec)
    assert got == items
    assert [i.name for i in got] == names


def test_field_names_are_astrings_in_responses() -> None:
    item = c.BodySection(text="HEADER.FIELDS", fields=('a"b', "c\\d", ""))
    assert item.name == 'BODY[HEADER.FIELDS ("a\\"b" "c\\\\d" "")]'


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"a UID FETCH 1:* FLAGS\r\n", c.Fetch("a", True, S("1:*"), (c.Flags(),))),
        (
            b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
            c.Fetch("a", True, S("300:500"), (c.Flags(),), 12345, True),
        ),
        (b"a FETCH $ (FLAGS) (changedsince 0)\r\n", c.Fetch("a", False, S("$"), (c.Flags(),), 0)),
        (b"a STORE 1 FLAGS (\\Seen)\r\n", c.Store("a", False, S("1"), "", False, ("\\Seen",))),
        (b"a STORE 1 FLAGS ()\r\n", c.Store("a", False, S("1"), "", False, ())),
        (
            b"a UID STORE 2:4 +FLAGS.SILENT \\Deleted $Junk\r\n",
            c.Store("a", True, S("2:4"), "+", True, ("\\Deleted", "$Junk")),
        ),
        (
            b"a STORE 1 (UNCHANGEDSINCE 320162338) -flags (\\Seen)\r\n",
            c.Store("a", False, S("1"), "-", False, ("\\Seen",), 320162338),
        ),
        (b"a COPY 2:4 MEETING\r\n", c.Copy("a", False, S("2:4"), "MEETING")),
        (b"a UID MOVE 42 inbox\r\n", c.Move("a", True, S("42"), "INBOX")),
    ],
)
def test_message_commands(line: bytes, event: Event) -> None:
    assert parsed(line) == event


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"a FETCH\r\n", "expected a space"),
        (b"a FETCH 1\r\n", "expected a space"),
        (b"a FETCH x FLAGS\r\n", "expected a sequence set at 'x FLAGS'"),
        (b"a FETCH 0 FLAGS\r\n", "invalid sequence set '0'"),
        (b"a FETCH 1 \r\n", "expected a FETCH item, found the end of the line"),
        (b"a FETCH 1 FOO\r\n", "unknown FETCH item FOO"),
        (b"a FETCH 1 (FLAGS ALL)\r\n", "ALL is a macro: it cannot be in a list"),
        (b"a FETCH 1 (FLAGS\r\n", "expected ')'"),
        (b"a FETCH 1 BODY.PEEK\r\n", "unknown FETCH item BODY.PEEK"),
        (b"a FETCH 1 FLAGS[]\r\n", "unknown FETCH item FLAGS"),
        (b"a FETCH 1 BODY[FOO]\r\n", "unknown section FOO"),
        (b"a FETCH 1 BODY[MIME]\r\n", "unknown section MIME"),
        (b"a FETCH 1 BODY[1.FOO]\r\n", "unknown section FOO"),
        (b"a FETCH 1 BODY[0]\r\n", "expected a part number without a leading zero"),
        (b"a FETCH 1 BODY[1.0]\r\n", "expected a part number without a leading zero"),
        (b"a FETCH 1 BODY[HEADER.FIELDS]\r\n", "expected a space at ']'"),
        (b"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n", "expected a string at ')]'"),
        (b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]\r\n", "invalid header field name"),
        (b"a FETCH 1 BODY[HEADER\r\n", "expected ']'"),
        (b"a FETCH 1 BODY[]<0>\r\n", "expected '.' at '>'"),
        (b"a FETCH 1 BODY[]<0.0>\r\n", "a partial length is not zero"),
        (b"a FETCH 1 BODY[]<0.1\r\n", "expected '>'"),
        (b"a FETCH 1 BINARY[TEXT]\r\n", "expected a part number at 'TEXT]'"),
        (b"a FETCH 1 BINARY[1\r\n", "expected ']'"),
        (b"a FETCH 1 FLAGS (FOO)\r\n", "unknown FETCH modifier FOO"),
        (b"a FETCH 1 FLAGS ()\r\n", "expected a FETCH modifier at ')'"),
        (b"a FETCH 1 FLAGS CHANGEDSINCE 1\r\n", "expected '(' before FETCH modifiers"),
        (
            b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
            "VANISHED needs UID FETCH and CHANGEDSINCE",
        ),
        (b"a UID FETCH 1 FLAGS (VANISHED)\r\n", "VANISHED needs UID FETCH and CHANGEDSINCE"),
        (b"a UID FETCH 1 FLAGS (VANISHED\r\n", "expected ')'"),
        (b"a STORE 1 FLAGS\r\n", "expected a space"),
        (b"a STORE 1 LABELS (x)\r\n", "expected FLAGS, +FLAGS or -FLAGS"),
        (b"a STORE 1 (FOO 1) FLAGS (x)\r\n", "the only STORE modifier is UNCHANGEDSINCE"),
        (b"a STORE 1 (UNCHANGEDSINCE 1 FLAGS (x)\r\n", "expected ')'"),
        (b"a STORE 1 FLAGS (\\Seen\r\n", "expected ')'"),
        (b"a STORE 1 FLAGS \\\r\n", "expected a flag"),
        (b"a COPY 1\r\n", "expected a space"),
        (b"a UID EXPUNGE\r\n", "expected a space"),
    ],
)
def test_message_errors(line: bytes, text: str) -> None:
    assert text in bad_text(line)


def test_fetch_macro_prefix_is_no_macro() -> None:
    assert "unknown FETCH item ALLX" in bad_text(b"a FETCH 1 (ALLX)\r\n")


def test_append_head_date_time() -> None:
    d = run(LOGIN + b'a APPEND INBOX " 1-Jan-2024 00:00:00 -0130" {1+}\r\nx\r\n')
    append = next(e for e in d.events if isinstance(e, c.Append))
    assert append.internal_date == datetime(
        2024, 1, 1, tzinfo=timezone(-timedelta(hours=1, minutes=30))
    )
    assert append.flags == ()


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        # RFC 9051 §9 date-time: the zone says how far local time is ahead of UTC.
        ('"05-Jan-2024 20:30:00 -0730"', datetime(2024, 1, 6, 4, 0, tzinfo=UTC)),
        ('"01-Jan-2024 03:00:00 +0545"', datetime(2023, 12, 31, 21, 15, tzinfo=UTC)),
        ('"31-Dec-9999 23:59:59 +0000"', datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ('"01-Jan-0001 00:30:00 -0100"', datetime(1, 1, 1, 1, 30, tzinfo=UTC)),
    ],
)
def test_append_date_time_zones(text: str, utc: datetime) -> None:
    d = run(LOGIN + b"a APPEND INBOX " + text.encode() + b" {1+}\r\nx\r\n")
    append = next(e for e in d.events if isinstance(e, c.Append))
    assert append.internal_date is not None
    assert append.internal_date == utc  # the same instant
    assert append.internal_date.astimezone(UTC) == utc


@pytest.mark.parametrize(
    ("head", "text"),
    [
        (
            b'INBOX "1-Jan-2024 00:00:00 +0000"',
            'expected a date-time like "01-Feb-2024 10:00:00 +0000"',
        ),
        (b'INBOX "31-Feb-2024 00:00:00 +0000"', "no such date-time"),
        (b'INBOX "01-Feb-2024 00:00:00 +0160"', "no such date-time"),
        (b'INBOX "01-Feb-2024 00:00:00 +2400"', "no such date-time"),
        (b'INBOX "01-Jan-0001 00:30:00 +0100"', "no such date-time"),
        (b'INBOX "31-Dec-9999 23:30:00 -0100"', "no such date-time"),
        (b'INBOX "01-Feb-2024 24:00:00 +0000"', "no such date-time"),
        (b'INBOX "01-Foo-2024 00:00:00 +0000"', "expected a date-time"),
        (b"INBOX (\\Seen", "expected a flag, found a literal"),
        (b"INBOX junk", "expected the message literal at 'junk '"),
        (b"INBOX CATENATE (", "expected the message literal"),
        (b"INBOX ~", "expected the message literal at '~"),
    ],
)
def test_append_head_errors(head: bytes, text: str) -> None:
    d = run(LOGIN + b"a APPEND " + head + b" {1}\r\n")
    event = d.events[-1]
    assert event.response.text.endswith(text) or text in event.response.text, event  # type: ignore[union-attr]
