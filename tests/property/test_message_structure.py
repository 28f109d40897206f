"""analyze() and what is built on it, under arbitrary and half-valid MIME (hypothesis).

(a) parsing never raises (called below the safety net, so a bug shows as a failure);
(b) the offsets hold together: every part inside its parent, children in order, an attached
    message spanning its part's body, the type/children/message invariants;
(c) every section is a slice of the message (or built from its header lines), HEADER + TEXT is
    the message, and part numbers find the parts they were derived from;
(d) the cache serialisation round-trips exactly; BODYSTRUCTURE/ENVELOPE hold only IMAP values;
(e) the fast address path agrees with the full parser; the decoders never raise.
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.message import envelope as envelope_module
from mailwright.message import search, sortkey
from mailwright.message import structure as structure_module
from mailwright.message.structure import (
    Part,
    Structure,
    binary,
    binary_size,
    bodystructure,
    envelope,
    part_at,
    section,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NL = st.sampled_from([b"\r\n", b"\n"])
BOUNDARIES = st.sampled_from(["b", "bb", "=_x", "a b", "b--", "-"])

HEADER_LINES = st.sampled_from(
    [
        b"Subject: Re: [list] hello",
        b"Subject: =?utf-8?q?caf=C3=A9?=",
        b'From: "Joe, Q" <joe@x.test>',
        b"From: g: a@b, (c) <c@d>;",
        b"To: <@r1,@r2:u@h>, bad <, x",
        b"To: undisclosed-recipients:;",
        b'Cc: "unterminated <a@b>',
        b"Sender:",
        b"Date: Tue, 1 Jul 2003 10:52:37 +0200",
        b"Message-ID: <id@x>",
        b"References: <a@x> <b@x>",
        b"In-Reply-To: <a@x>",
        b"Content-Type: text/plain; charset=utf-8",
        b'Content-Type: text/html; charset="iso-8859-1"',
        b"Content-Type: message/rfc822",
        b"Content-Type: message/global",
        b"Content-Type: multipart/digest; boundary=b",
        b"Content-Type: multipart/mixed",
        b'Content-Type: application/pdf; name="x (1).pdf"',
        b"Content-Type: garbage",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Transfer-Encoding: x-unknown",
        b"Content-Disposition: attachment; filename=a.txt",
        b"Content-Language: en, de",
        b"Content-ID: <cid@x>",
        b" folded continuation",
        b"no colon here",
        b"Subject: \xff\xfe 8-bit \xc3\xa9",
        b"X-Nul: a\x00b",
    ]
)
RANDOM_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
BODY = st.one_of(
    st.sampled_from(
        [b"", b"text", b"line\r\nline\r\n", b"aGVsbG8=", b"caf=C3=A9=\r\n", b"--b\r\n"]
    ),
    st.binary(max_size=60),
)


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    nl = draw(NL)
    lines = draw(st.lists(st.one_of(HEADER_LINES, RANDOM_LINE), max_size=5))
    head = b"".join(line + nl for line in lines)
    return head + (nl if draw(st.booleans()) else b"") + draw(BODY)


def _extend(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def multipart(draw: st.DrawFn) -> bytes:
        nl = draw(NL)
        boundary = draw(BOUNDARIES)
        sub = draw(st.sampled_from(["mixed", "alternative", "digest"]))
        quoted = draw(st.booleans())
        value = f'"{boundary}"' if quoted else boundary
        head = f"Content-Type: multipart/{sub}; boundary={value}".encode() + nl + nl
        body = draw(st.sampled_from([b"", b"preamble" + nl]))
        delim = b"--" + boundary.encode()
        for p in draw(st.lists(inner, max_size=4)):
            body += delim + draw(st.sampled_from([b"", b" \t", b"--x"])) + nl + p + nl
        if draw(st.booleans()):
            body += delim + b"--" + nl + draw(st.sampled_from([b"", b"epilogue" + nl, delim + nl]))
        return head + body

    @st.composite
    def message(draw: st.DrawFn) -> bytes:
        nl = draw(NL)
        ct = draw(st.sampled_from([b"message/rfc822", b"message/global", b"Message/RFC822"]))
        cte = draw(st.sampled_from([b"", b"Content-Transfer-Encoding: 8bit" + nl]))
        return b"Content-Type: " + ct + nl + cte + nl + draw(inner)

    return st.one_of(multipart(), message())


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    raw = draw(st.recursive(leaf(), _extend, max_leaves=12))
    # Damage: truncate somewhere, or insert junk somewhere.
    if raw and draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        if draw(st.booleans()):
            raw = raw[:cut]
        else:
            raw = (
                raw[:cut]
                + draw(st.sampled_from([b"\r\n", b"\n\n", b"--b\r\n", b"\xff"]))
                + raw[cut:]
            )
    return raw


ANY_MESSAGE = st.one_of(messages(), st.binary(max_size=300))


def parse(raw: bytes) -> Structure:
    # Below analyze()'s safety net: an exception is a test failure, not a fallback.
    return structure_module._message(raw, 0, len(raw), 0, [structure_module.MAX_PARTS])


def numbered(s: Structure, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Part]]:
    """Every part with its section number (RFC 3501 §6.4.5)."""
    body = s.body
    if body.children:
        for i, c in enumerate(body.children, 1):
            yield from _numbered_part(c, (*prefix, i))
    else:
        yield from _numbered_part(body, (*prefix, 1))


def _numbered_part(p: Part, number: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Part]]:
    yield number, p
    if p.children:
        for i, c in enumerate(p.children, 1):
            yield from _numbered_part(c, (*number, i))
    elif p.message is not None:
        yield from numbered(p.message, number)


def check_value(v: object) -> None:
    if isinstance(v, list):
        for item in v:
            check_value(item)
    else:
        assert v is None or type(v) in (int, str), v
        if isinstance(v, str):
            assert "\r" not in v and "\n" not in v and "\x00" not in v


def check_offsets(raw: bytes, s: Structure) -> None:
    assert (s.body.header_start, s.body.end) == (0, len(raw))
    for p in s.body.walk():
        assert 0 <= p.header_start <= p.body_start <= p.end <= len(raw)
        assert p.size == p.end - p.body_start
        assert (p.type == "multipart") == bool(p.children)
        is_message = p.type == "message" and p.subtype in ("rfc822", "global")
        assert is_message == (p.message is not None)
        assert (p.lines is not None) == (p.type == "text" or is_message)
        last = p.body_start
        for c in p.children:
            assert last <= c.header_start and c.end <= p.end
            last = c.end
        if p.message is not None:
            m = p.message.body
            assert (m.header_start, m.end) == (p.body_start, p.end)


def check_sections(raw: bytes, s: Structure) -> None:
    assert section(raw, s, (), None) == raw
    assert section(raw, s, (), "HEADER") + section(raw, s, (), "TEXT") == raw
    for number, p in numbered(s):
        assert part_at(s, number) is p
        body = section(raw, s, number, None)
        assert body == raw[p.body_start : p.end]
        mime = section(raw, s, number, "MIME")
        assert mime == raw[p.header_start : p.body_start]
        if p.message is not None:
            head = section(raw, s, number, "HEADER")
            assert head + section(raw, s, number, "TEXT") == body
            fields = section(raw, s, number, "HEADER.FIELDS.NOT", ())
            assert fields.endswith(b"\r\n")
        decoded = binary(raw, s, number)
        size = binary_size(raw, s, number)
        assert (decoded is None) == (size is None)
        if decoded is not None:
            assert size == len(decoded)
    fields = section(raw, s, (), "HEADER.FIELDS", ("subject", "to", "x"))
    for line in fields.split(b"\n")[:-1]:
        assert line + b"\n" in raw or line.endswith(b"\r") or line == b""


@SETTINGS
@given(ANY_MESSAGE)
def test_offsets_and_sections(raw: bytes) -> None:
    s = parse(raw)
    check_offsets(raw, s)
    check_sections(raw, s)


@SETTINGS
@given(ANY_MESSAGE)
def test_serialisation_values_and_helpers(raw: bytes) -> None:
    s = parse(raw)
    assert Structure.from_bytes(s.to_bytes()) == s
    for extensible in (True, False):
        check_value(bodystructure(s, extensible))
    check_value(envelope(s))
    search.body_text(raw, s, limit=200)
    search.header_text(raw, s)
    search.header_values(raw, s, "subject")
    search.sent_date(s)
    for field in ("from", "to", "cc", "bcc", "sender", "reply-to"):
        search.address_text(s, field)
        sortkey.first_mailbox(s, field)
        sortkey.display_name(s, field)
    sortkey.subject_key(s)
    sortkey.thread_parents(s)
    sortkey.message_id(s)


ADDRESS_PIECES = st.sampled_from(
    ['"', "<", ">", "@", ",", ";", ":", "(", ")", "[", "]", "\\", " ", "\t", ".", "a", "b", "é",
     "\u00a0", "=?utf-8?q?x?=", "x@y", "<a@b>", '"q q"', "Name "]
)  # fmt: skip
ADDRESS_TEXT = st.one_of(
    st.lists(ADDRESS_PIECES, max_size=12).map("".join),
    st.text(max_size=40),
)


@SETTINGS
@given(ADDRESS_TEXT)
def test_fast_address_path_agrees_with_the_parser(text: str) -> None:
    full = envelope_module._AddressParser(text).parse()
    assert envelope_module.parse_addresses(text) == full


@SETTINGS
@given(st.text(max_size=80), st.binary(max_size=80))
def test_decoders_never_raise(text: str, data: bytes) -> None:
    envelope_module.decode_words(text)
    envelope_module.decode_words("=?utf-8?b?" + text + "?=")
    envelope_module.decode_base64(data)
    structure_module.decode_transfer(data, "quoted-printable")
    sortkey.split_subject(text)
    search.html_text(text)
