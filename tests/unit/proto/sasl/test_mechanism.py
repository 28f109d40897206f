"""SASL server mechanisms: base64 lines, PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login)."""

from __future__ import annotations

import base64

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.sasl.mechanism import (
    MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    Login,
    Plain,
    decode_response,
    encode_challenge,
    server_mechanism,
)

# -- base64 lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "initial", "data"),
    [
        ("AGFsaWNlAHNlY3JldA==", False, b"\0alice\0secret"),
        (b"AGFsaWNlAHNlY3JldA==", True, b"\0alice\0secret"),
        ("YQ==", False, b"a"),
        ("YWI=", True, b"ab"),
        ("YWJj", False, b"abc"),
        ("", False, b""),  # an empty response to a challenge
        ("=", True, b""),  # RFC 5034 §4 / RFC 4954 §4: "=" is an empty initial response
        (b"=", True, b""),
    ],
)
def test_decode_response(text: str | bytes, initial: bool, data: bytes) -> None:
    assert decode_response(text, initial=initial) == data


@pytest.mark.parametrize(
    ("text", "initial", "reason"),
    [
        ("", True, "empty initial response"),
        ("=", False, "not valid base64"),  # "=" only stands for empty as an initial response
        ("YQ", False, "not valid base64"),  # padding missing
        ("YQ=", False, "not valid base64"),
        ("YQ===", False, "not valid base64"),
        ("Y Q==", False, "not valid base64"),
        ("YQ==\n", False, "not valid base64"),
        ("YQ==YQ==", False, "not valid base64"),
        ("a-b_", False, "not valid base64"),  # the URL-safe alphabet is another encoding
        ("*", False, "not valid base64"),
        ("\u00e9", False, "not valid base64"),
        (b"\xff", False, "not valid base64"),
        ("YR==", False, "not canonical"),  # decodes to "a" too, but is not how "a" encodes
        ("YWJ=", False, "not canonical"),
    ],
)
def test_decode_response_refusals(text: str | bytes, initial: bool, reason: str) -> None:
    result = decode_response(text, initial=initial)
    assert isinstance(result, Failure)
    assert reason in result.reason


def test_encode_challenge() -> None:
    assert encode_challenge(b"") == ""
    assert encode_challenge(b"Username:") == "VXNlcm5hbWU6"
    assert encode_challenge(b"Password:") == "UGFzc3dvcmQ6"


# -- PLAIN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "credentials"),
    [
        (b"\0alice\0secret", Credentials("", "alice", "secret")),
        (b"admin\0alice\0secret", Credentials("admin", "alice", "secret")),
        (b"\0alice@example.test\0pass word", Credentials("", "alice@example.test", "pass word")),
        ("\0j\u00f6rg\0p\u00e4ss".encode(), Credentials("", "j\u00f6rg", "p\u00e4ss")),
        (b"\0a\0line\r\nbreak", Credentials("", "a", "line\r\nbreak")),  # passwords: any
    ],
)
def test_plain_with_initial_response(message: bytes, credentials: Credentials) -> None:
    assert Plain().step(message) == credentials


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = Plain()
    assert mech.step(None) == Challenge(b"")
    assert mech.step(b"\0alice\0secret") == Credentials("", "alice", "secret")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"alice secret", "0 NUL separators"),
        (b"alice\0secret", "1 NUL separators"),
        (b"\0a\0b\0c", "3 NUL separators"),
        (b"", "0 NUL separators"),
        (b"\0\0secret", "empty username"),
        (b"\0alice\0", "empty password"),
        (b"\0\0", "empty username"),
        (b"\xff\0alice\0secret", "authorization identity is not UTF-8"),
        (b"\0\xffalice\0secret", "username is not UTF-8"),
        (b"\0alice\0\xff", "password is not UTF-8"),
        (b"\0ali\r\nce\0secret", "control character in username"),
        (b"\0ali\tce\0secret", "control character in username"),
        (b"\0ali\x7fce\0secret", "control character in username"),
        (b"ad\nmin\0alice\0secret", "control character in authorization identity"),
    ],
)
def test_plain_refusals(message: bytes, reason: str) -> None:
    result = Plain().step(message)
    assert isinstance(result, Failure)
    assert reason in result.reason


@pytest.mark.parametrize("first", [b"\0a\0b", b"junk"])
def test_plain_step_after_the_end_is_local_error(first: bytes) -> None:
    mech = Plain()
    mech.step(first)
    with pytest.raises(LocalProtocolError, match="finished"):
        mech.step(b"\0a\0b")


def test_plain_second_empty_step_is_local_error() -> None:
    mech = Plain()
    mech.step(None)
    with pytest.raises(LocalProtocolError, match="response"):
        mech.step(None)


# -- LOGIN ------------------------------------------------------------------------------------


def test_login_exchange() -> None:
    mech = Login()
    assert mech.step(None) == Challenge(b"Username:")
    assert mech.step(b"alice") == Challenge(b"Password:")
    assert mech.step(b"secret") == Credentials("", "alice", "secret")


def test_login_initial_response_is_the_username() -> None:
    mech = Login()
    assert mech.step(b"alice@example.test") == Challenge(b"Password:")
    assert mech.step("p\u00e4ss word".encode()) == Credentials(
        "", "alice@example.test", "p\u00e4ss word"
    )


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        (b"", "empty username"),
        (b"\xff", "username is not UTF-8"),
        (b"al\r\nice", "control character in username"),
        (b"al\0ice", "control character in username"),
    ],
)
def test_login_bad_username(username: bytes, reason: str) -> None:
    mech = Login()
    mech.step(None)
    result = mech.step(username)
    assert isinstance(result, Failure) and reason in result.reason
    with pytest.raises(LocalProtocolError, match="finished"):
        mech.step(b"secret")


@pytest.mark.parametrize(("password", "reason"), [(b"", "empty password"), (b"\xfe", "not UTF-8")])
def test_login_bad_password(password: bytes, reason: str) -> None:
    mech = Login()
    mech.step(b"alice")
    result = mech.step(password)
    assert isinstance(result, Failure) and reason in result.reason
    with pytest.raises(LocalProtocolError, match="finished"):
        mech.step(b"x")


@pytest.mark.parametrize("steps", [[None], [b"alice"]])
def test_login_none_where_a_response_is_due_is_local_error(steps: list[bytes | None]) -> None:
    mech = Login()
    for data in steps:
        mech.step(data)
    with pytest.raises(LocalProtocolError, match="response"):
        mech.step(None)


# -- the registry and reprs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("PLAIN", Plain), ("plain", Plain), ("Login", Login), ("LOGIN", Login)],
)
def test_server_mechanism(name: str, kind: type[object]) -> None:
    mech = server_mechanism(name)
    assert isinstance(mech, kind)
    assert server_mechanism(name) is not mech  # a fresh one per exchange


@pytest.mark.parametrize("name", ["CRAM-MD5", "", "PLAIN ", "PLA\u0131N", "SCRAM-SHA-256"])
def test_unknown_mechanism(name: str) -> None:
    assert server_mechanism(name) is None


def test_mechanism_names() -> None:
    assert sorted(MECHANISMS) == ["LOGIN", "PLAIN"]
    assert Plain.name == "PLAIN" and Login.name == "LOGIN"


def test_password_never_in_repr() -> None:
    creds = Credentials("", "alice", "hunter2")
    assert "hunter2" not in repr(creds)
    assert repr(creds) == "Credentials(authzid='', username='alice')"


def test_round_trip_through_base64() -> None:
    # What a POP3/IMAP/SMTP driver does: decode a client line, step, encode the challenge.
    mech = server_mechanism("LOGIN")
    assert mech is not None
    challenge = mech.step(None)
    assert isinstance(challenge, Challenge)
    assert encode_challenge(challenge.data) == "VXNlcm5hbWU6"
    line = base64.b64encode(b"alice").decode()
    data = decode_response(line)
    assert isinstance(data, bytes)
    assert mech.step(data) == Challenge(b"Password:")
