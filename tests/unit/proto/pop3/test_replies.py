"""POP3 responses: rendering, extended codes, multi-line bodies, CAPA."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.replies import Continuation, Pop3Reply, encode_lines, stuff_line


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (replies.OK, b"+OK\r\n"),
        (replies.LOGGED_IN, b"+OK Logged in\r\n"),
        (replies.UNKNOWN_COMMAND, b"-ERR Unknown command\r\n"),
        (replies.AUTH_FAILED, b"-ERR [AUTH] Authentication failed\r\n"),
        (replies.IN_USE, b"-ERR [IN-USE] Mailbox is in use by another session\r\n"),
        (replies.LOGIN_DELAY, b"-ERR [LOGIN-DELAY] Logged in too recently\r\n"),
        (replies.SYS_TEMP, b"-ERR [SYS/TEMP] Temporary system problem, try again later\r\n"),
        (replies.SYS_PERM, b"-ERR [SYS/PERM] Permanent system problem\r\n"),
        (Pop3Reply(False, code="AUTH"), b"-ERR [AUTH]\r\n"),
        (Pop3Reply(False), b"-ERR\r\n"),
        (Pop3Reply(True, "caf\u00e9"), "+OK caf\u00e9\r\n".encode()),
        (replies.TOO_MANY_ERRORS, b"-ERR Too many errors\r\n"),
    ],
)
def test_status_line(reply: Pop3Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire
    assert reply.status_line() == wire
    assert str(reply) == wire[:-2].decode()
    assert reply.is_error is (not reply.ok)


def test_with_text_keeps_the_code() -> None:
    reply = replies.SYS_TEMP.with_text("Storage busy")
    assert reply.to_bytes() == b"-ERR [SYS/TEMP] Storage busy\r\n"


def test_multiline_reply_renders_body() -> None:
    reply = Pop3Reply(True, "2 messages", ("1 10", ".hidden", "", "..", "2 20"))
    assert reply.to_bytes() == b"+OK 2 messages\r\n1 10\r\n..hidden\r\n\r\n...\r\n2 20\r\n.\r\n"
    assert reply.status_line() == b"+OK 2 messages\r\n"


def test_empty_multiline_body() -> None:
    assert Pop3Reply(True, "", ()).to_bytes() == b"+OK\r\n.\r\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ok": True, "text": "a\r\n-ERR b"},
        {"ok": True, "text": "a\rb"},
        {"ok": False, "text": "a\nb"},
        {"ok": False, "text": "x", "code": "SYS\r\n"},
        {"ok": False, "text": "x", "code": ""},
        {"ok": False, "text": "x", "code": "A]B"},
        {"ok": False, "text": "x", "code": "A B"},
        {"ok": False, "text": "x", "lines": ("a",)},  # RFC 1939 §3: only +OK has a body
    ],
)
def test_malformed_replies_are_local_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Pop3Reply(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["a\r\nb", "a\n", b"\rx"])
def test_line_breaks_inside_body_lines_are_local_errors(line: str | bytes) -> None:
    with pytest.raises(LocalProtocolError):
        encode_lines([line])
    with pytest.raises(LocalProtocolError):
        text = line.decode() if isinstance(line, bytes) else line
        Pop3Reply(True, "", (text,)).to_bytes()


def test_encode_lines() -> None:
    assert encode_lines([]) == b".\r\n"
    assert encode_lines(["a", b".b", "\u00fc"]) == "a\r\n..b\r\n\u00fc\r\n.\r\n".encode()
    assert stuff_line(b".") == b".."
    assert stuff_line(b"x.") == b"x."


def test_continuation() -> None:
    assert Continuation().to_bytes() == b"+ \r\n"
    assert Continuation("VXNlcm5hbWU6").to_bytes() == b"+ VXNlcm5hbWU6\r\n"
    with pytest.raises(LocalProtocolError):
        Continuation("a\r\n+OK")


def test_capa_minimal() -> None:
    reply = replies.capa(user=False, stls=False)
    assert reply.lines == ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING")
    assert reply.to_bytes().startswith(b"+OK Capability list follows\r\nTOP\r\n")


def test_capa_everything() -> None:
    reply = replies.capa(user=True, stls=True, sasl=["PLAIN", "LOGIN"], implementation="mailwright")
    assert reply.lines is not None
    assert reply.lines[5:] == ("USER", "SASL PLAIN LOGIN", "STLS", "IMPLEMENTATION mailwright")


def test_capa_without_mechanisms_has_no_sasl_line() -> None:
    reply = replies.capa(user=True, stls=False, sasl=[])
    assert reply.lines is not None
    assert not any(line.startswith("SASL") for line in reply.lines)
