"""Builders of MIME messages for the structure tests."""

from __future__ import annotations


def part(body: bytes, *headers: str, nl: bytes = b"\r\n") -> bytes:
    """One MIME entity: header lines, the blank line, the body."""
    head = b"".join(h.encode() + nl for h in headers)
    return head + nl + body


def multipart(
    boundary: str,
    *parts: bytes,
    subtype: str = "mixed",
    headers: tuple[str, ...] = (),
    preamble: bytes = b"",
    epilogue: bytes = b"",
    close: bool = True,
    nl: bytes = b"\r\n",
) -> bytes:
    """A multipart entity: its header (Content-Type with ``boundary``) and body."""
    ct = f'Content-Type: multipart/{subtype}; boundary="{boundary}"'
    head = b"".join(h.encode() + nl for h in (*headers, ct)) + nl
    delim = b"--" + boundary.encode()
    body = preamble
    for p in parts:
        body += delim + nl + p + nl
    if close:
        body += delim + b"--" + nl + epilogue
    return head + body


# RFC 3501 §6.4.5's example: the part numbers of a complex message.
GIF = b"R0lGODlhAQABAAAAACw="
RFC3501_EXAMPLE = multipart(
    "outer",
    part(b"part 1 text\r\n", "Content-Type: text/plain"),
    part(
        b"AAEC\r\n", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64"
    ),
    part(
        b"Subject: three\r\n"
        + multipart(
            "three",
            part(b"part 3.1 text", "Content-Type: text/plain"),
            part(b"3.2 bytes", "Content-Type: application/octet-stream"),
        ),
        "Content-Type: message/rfc822",
    ),
    multipart(
        "four",
        part(GIF, "Content-Type: image/gif", "Content-Transfer-Encoding: base64"),
        part(
            b"Subject: four two\r\n"
            + multipart(
                "fourtwo",
                part(b"part 4.2.1 text", "Content-Type: text/plain"),
                multipart(
                    "alt",
                    part(b"4.2.2.1 plain", "Content-Type: text/plain"),
                    part(b"4.2.2.2 rich", "Content-Type: text/richtext"),
                    subtype="alternative",
                ),
            ),
            "Content-Type: message/rfc822",
        ),
    ),
    headers=("From: a@example.test", "Subject: example", "MIME-Version: 1.0"),
)
