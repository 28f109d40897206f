"""8-bit → 7-bit for a server without 8BITMIME (RFC 6152 §3, RFC 2045 §6).

A message whose body has 8-bit octets may not be sent to a server that did not offer
8BITMIME. Its MIME leaves with 8-bit content are re-encoded — text as quoted-printable,
anything else as base64 — and every 8bit label becomes 7bit. What cannot be converted is
refused (``ConversionError``, for a 5.6.3 bounce): 8-bit octets in any header, since
rewriting header text would change what the sender wrote.

This works on the whole message in memory (the stdlib ``email`` package parses it); it is
used only on that rare path, never for a server that takes 8-bit mail as it is.
Converting changes the body, so a DKIM signature over it no longer verifies (as with every
MTA that downgrades).
"""

from __future__ import annotations

import base64
import binascii
import email
import io
from email import policy
from email.generator import BytesGenerator
from email.message import Message

_POLICY = policy.compat32.clone(linesep="\r\n")


class ConversionError(Exception):
    """The message cannot be made 7-bit without changing its meaning."""


def to_seven_bit(data: bytes) -> bytes:
    """``data`` with every 8-bit body part re-encoded; ``data`` itself when it is 7-bit."""
    if data.isascii():
        return data
    end = _header_end(data)
    if not data[:end].isascii():
        raise ConversionError("8-bit characters in the message header")
    msg = email.message_from_bytes(data, policy=policy.compat32)
    for part in msg.walk():
        _convert(part)
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"  # its Content-Transfer-Encoding needs it (RFC 2045 §4)
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=_POLICY).flatten(msg)
    result = out.getvalue()
    if not result.isascii():  # a safety net: the loop above must have caught every case
        raise ConversionError("8-bit data left after conversion")
    return result


def _header_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else len(data)


def _convert(part: Message) -> None:
    for name, value in part.raw_items():
        if not (name.isascii() and str(value).isascii()):
            raise ConversionError(f"8-bit characters in a MIME part header ({name})")
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if part.is_multipart():
        # A multipart or message/rfc822 container: its children are converted in turn.
        # The preamble and epilogue are not content (RFC 2046 §5.1.1): make them ASCII.
        if part.preamble and not part.preamble.isascii():
            part.preamble = _ascii(part.preamble)
        if part.epilogue and not part.epilogue.isascii():
            part.epilogue = _ascii(part.epilogue)
        if cte in ("8bit", "binary"):
            part.replace_header("Content-Transfer-Encoding", "7bit")
        return
    raw = part.get_payload()
    if isinstance(raw, str) and raw.isascii():
        if cte in ("8bit", "binary"):
            part.replace_header("Content-Transfer-Encoding", "7bit")
        return
    body = part.get_payload(decode=True)
    if not isinstance(body, bytes):
        raise ConversionError("a MIME part cannot be decoded")
    if part.get_content_maintype() == "text":
        text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        encoded = binascii.b2a_qp(text, quotetabs=False, istext=True, header=False)
        new_cte = "quoted-printable"
    else:
        encoded = base64.encodebytes(body)
        new_cte = "base64"
    if "Content-Transfer-Encoding" in part:
        part.replace_header("Content-Transfer-Encoding", new_cte)
    else:
        part["Content-Transfer-Encoding"] = new_cte
    part.set_payload(encoded.decode("ascii"))


def _ascii(text: str) -> str:
    return "".join(c if c.isascii() else "?" for c in text)
