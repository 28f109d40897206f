"""MessageScanner: header size, MIME depth, 8-bit headers; one verdict under any chunking."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.message import scan
from mailwright.message.scan import MessageProblem, MessageScanner


def scanner(
    max_header_size: int = 100_000, max_mime_depth: int = 10, ascii_headers: bool = False
) -> MessageScanner:
    return MessageScanner(
        max_header_size=max_header_size, max_mime_depth=max_mime_depth, ascii_headers=ascii_headers
    )


def verdict(s: MessageScanner, data: bytes, chunks: Sequence[int] = ()) -> str | None:
    """Feed ``data`` cut at ``chunks`` (offsets), close, and return the problem kind."""
    start = 0
    for cut in sorted(set(chunks)):
        s.feed(data[start:cut])
        start = cut
    s.feed(data[start:])
    s.close()
    return s.problem.kind if s.problem else None


def multipart(boundary: str, *parts: bytes, ct: str | None = None) -> bytes:
    head = (ct or f'Content-Type: multipart/mixed; boundary="{boundary}"').encode() + b"\r\n\r\n"
    body = b"preamble\r\n"
    for p in parts:
        body += f"--{boundary}\r\n".encode() + p + b"\r\n"
    return head + body + f"--{boundary}--\r\nepilogue\r\n".encode()


def nested(depth: int) -> bytes:
    """A message whose multiparts nest ``depth`` deep."""
    inner = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(depth, 0, -1):
        inner = multipart(f"b{level}", inner)
    return b"Subject: nested\r\n" + inner


# -- header size --------------------------------------------------------------------


def test_header_size_counts_the_whole_block_including_the_blank_line() -> None:
    msg = b"Subject: x\r\n\r\nbody\r\n"  # 12 + 2 header bytes
    assert verdict(scanner(max_header_size=14), msg) is None
    assert verdict(scanner(max_header_size=13), msg) == "header_size"


def test_body_and_part_headers_do_not_count_as_header_size() -> None:
    big_part = b"X-Part: " + b"p" * 500 + b"\r\n\r\n" + b"b" * 5000
    msg = b"Subject: s\r\n" + multipart("zz", big_part)
    assert verdict(scanner(max_header_size=200), msg) is None


def test_header_without_body_end() -> None:
    assert verdict(scanner(max_header_size=20), b"Subject: " + b"x" * 30) == "header_size"
    assert verdict(scanner(max_header_size=50), b"Subject: " + b"x" * 30) is None


def test_over_long_header_line_is_a_header_size_problem() -> None:
    line = b"X-Long: " + b"a" * scan._MAX_HEADER_LINE + b"\r\n"
    msg = line + b"\r\nbody\r\n"
    big = scanner(max_header_size=10 * scan._MAX_HEADER_LINE)
    assert verdict(big, msg) == "header_size"
    # Fed in small pieces, the scanner holds no more than about one line limit.
    s = scanner(max_header_size=10 * scan._MAX_HEADER_LINE)
    for i in range(0, len(msg), 1000):
        s.feed(msg[i : i + 1000])
        assert len(s._partial) <= scan._MAX_HEADER_LINE + 1000
    s.close()
    assert s.problem is not None and s.problem.kind == "header_size"


def test_problem_stops_the_scan() -> None:
    s = scanner(max_header_size=10)
    s.feed(b"Subject: far too long\r\n")
    first = s.problem
    assert isinstance(first, MessageProblem) and first.kind == "header_size"
    s.feed(b"\r\nmore\r\n" * 10)
    s.close()
    assert s.problem is first


# -- MIME depth ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_mime_depth_limit(depth: int) -> None:
    assert verdict(scanner(max_mime_depth=depth), nested(depth)) is None
    assert verdict(scanner(max_mime_depth=depth), nested(depth + 1)) == "mime_depth"


def test_sibling_multiparts_do_not_add_up() -> None:
    siblings = [multipart(f"s{i}", b"\r\nleaf") for i in range(5)]
    msg = b"Subject: s\r\n" + multipart("outer", *siblings)
    assert verdict(scanner(max_mime_depth=2), msg) is None


def test_boundary_with_transport_padding() -> None:
    # RFC 2046 §5.1.1: white space may follow a boundary delimiter.
    inner = multipart("in", b"\r\nleaf").replace(b"--in\r\n", b"--in \t \r\n")
    msg = b"Subject: s\r\n" + multipart("out", inner)
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"


def test_folded_content_type() -> None:
    inner = multipart("in", b"\r\nleaf", ct="Content-Type: multipart/alternative;\r\n\tboundary=in")
    msg = b"Subject: s\r\n" + multipart(
        "out", inner, ct='Content-Type: multipart/mixed;\r\n boundary="out"'
    )
    assert verdict(scanner(max_mime_depth=2), msg) is None
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"


def test_folding_keeps_white_space_inside_a_quoted_boundary() -> None:
    # RFC 5322 §2.2.3: unfolding removes CRLF only; the boundary is "a b", not "ab".
    inner = multipart("in", b"\r\nleaf")
    msg = b"Subject: s\r\n" + multipart(
        "a b", inner, ct='Content-Type: multipart/mixed; boundary="a\r\n b"'
    )
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"
    assert verdict(scanner(max_mime_depth=2), msg) is None


def test_boundary_parameter_name_must_match_exactly() -> None:
    inner = multipart("in", b"\r\nleaf")
    ct = "Content-Type: multipart/mixed; notboundary=wrong; boundary=right"
    msg = b"Subject: s\r\n" + multipart("right", inner, ct=ct)
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"


def test_content_type_is_case_insensitive() -> None:
    inner = multipart("in", b"\r\nleaf", ct="CONTENT-TYPE: Multipart/Mixed; BOUNDARY=in")
    msg = b"Subject: s\r\n" + multipart("out", inner)
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"


def test_attached_messages_count_as_levels() -> None:
    msg = b"Subject: top\r\n"
    for _ in range(4):
        msg += b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
    msg += b"\r\nleaf\r\n"
    assert verdict(scanner(max_mime_depth=4), msg) is None
    assert verdict(scanner(max_mime_depth=3), msg) == "mime_depth"


def test_multipart_inside_an_attached_message() -> None:
    attached = (
        b"Content-Type: message/rfc822\r\n\r\n"
        + b"Subject: inner\r\n"
        + multipart("in", b"\r\nleaf")
    )
    msg = b"Subject: s\r\n" + multipart("out", attached, b"\r\nsecond part")
    assert verdict(scanner(max_mime_depth=3), msg) is None
    assert verdict(scanner(max_mime_depth=2), msg) == "mime_depth"


def test_long_body_lines_are_not_kept() -> None:
    s = scanner()
    s.feed(b"Subject: s\r\n\r\n")
    for _ in range(1000):
        s.feed(b"y" * 1000)
        assert len(s._partial) <= scan._MAX_BODY_LINE + 1000
    s.feed(b"\r\nlast\r\n")
    s.close()
    assert s.problem is None


# -- 8-bit headers ------------------------------------------------------------------


def test_eight_bit_header_refused_only_when_asked() -> None:
    msg = "Subject: café\r\n\r\nbody\r\n".encode()
    assert verdict(scanner(ascii_headers=True), msg) == "eight_bit_header"
    assert verdict(scanner(ascii_headers=False), msg) is None


def test_eight_bit_body_is_fine_with_ascii_headers() -> None:
    msg = "Subject: plain\r\n\r\nbody café\r\n".encode()
    assert verdict(scanner(ascii_headers=True), msg) is None


def test_eight_bit_in_a_part_header() -> None:
    part = 'Content-Disposition: attachment; filename="naïve.txt"\r\n\r\nx'.encode()
    msg = b"Subject: s\r\n" + multipart("b", part)
    assert verdict(scanner(ascii_headers=True), msg) == "eight_bit_header"
    assert verdict(scanner(ascii_headers=False), msg) is None


def test_bare_lf_line_endings() -> None:
    msg = nested(2).replace(b"\r\n", b"\n")
    assert verdict(scanner(max_mime_depth=1), msg) == "mime_depth"
    assert verdict(scanner(max_mime_depth=2), msg) is None


# -- any chunking, one verdict --------------------------------------------------------

LINES = [
    b"Subject: hello",
    b"Content-Type: multipart/mixed; boundary=b1",
    b'Content-Type: multipart/mixed; boundary="b 2"',
    b"Content-Type: multipart/mixed;",
    b"\tboundary=b1",
    b' boundary="b',
    b' 2"',
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain",
    "X-Name: Jürgen".encode(),
    b"X-Long: " + b"L" * 50,
    b"B" * 45,
    b"",
    b"--b1",
    b"--b1--",
    b"--b 2",
    b"--b 2  ",
    b"--b 2--",
    b"--b1" + b" " * 40,
    b"body text",
    "body é".encode(),
]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(LINES), max_size=40))
    endings = draw(
        st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=len(lines), max_size=len(lines))
    )
    tail = draw(st.sampled_from([b"", b"no newline at end", b"\r"]))
    return b"".join(line + end for line, end in zip(lines, endings, strict=True)) + tail


@contextmanager
def small_line_limits() -> Iterator[None]:
    # Small limits so short generated messages reach the over-long-line paths.
    with (
        mock.patch.object(scan, "_MAX_HEADER_LINE", 40),
        mock.patch.object(scan, "_MAX_BODY_LINE", 30),
    ):
        yield


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=messages(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    max_header_size=st.sampled_from([30, 120, 100_000]),
    max_mime_depth=st.sampled_from([1, 2, 3]),
    ascii_headers=st.booleans(),
)
def test_same_verdict_under_any_chunking(
    data: bytes, cuts: list[int], max_header_size: int, max_mime_depth: int, ascii_headers: bool
) -> None:
    def fresh() -> MessageScanner:
        return scanner(max_header_size, max_mime_depth, ascii_headers)

    with small_line_limits():
        whole = fresh()
        expected = verdict(whole, data)
        chunked = fresh()
        assert verdict(chunked, data, [c for c in cuts if c < len(data)]) == expected
        bytewise = fresh()
        assert verdict(bytewise, data, range(1, len(data))) == expected
