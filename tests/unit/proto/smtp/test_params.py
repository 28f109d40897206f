"""ESMTP parameter values the machine checks: MAIL AUTH= (RFC 4954 §5), MAIL RET= and
ENVID=, RCPT NOTIFY= and ORCPT= (RFC 3461 §4). Values stay undecoded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailwright.core.address import Address
from mailwright.core.reply import Reply
from mailwright.proto.smtp import replies
from mailwright.proto.smtp.events import Event, Invalid, MailFrom, RcptTo
from mailwright.proto.smtp.server import (
    AUTH_MAIL_PARAM,
    BASE_MAIL_PARAMS,
    DSN_MAIL_PARAMS,
    DSN_RCPT_PARAMS,
    Limits,
)
from tests.unit.proto.smtp.helpers import GREET, drive, in_state

DSN = Limits(
    mail_params=BASE_MAIL_PARAMS | DSN_MAIL_PARAMS | {AUTH_MAIL_PARAM},
    rcpt_params=DSN_RCPT_PARAMS,
)
MAIL = GREET + b"MAIL FROM:<a@remote.test>\r\n"


def mail(params: str, limits: Limits = DSN) -> Event:
    conn = in_state(GREET, limits)
    events, _ = drive(conn, f"MAIL FROM:<a@remote.test> {params}\r\n".encode())
    assert len(events) == 1
    return events[0]


def rcpt(params: str, limits: Limits = DSN) -> Event:
    conn = in_state(MAIL, limits)
    events, _ = drive(conn, f"RCPT TO:<b@example.test> {params}\r\n".encode())
    assert len(events) == 1
    return events[0]


def test_parameter_name_sets() -> None:
    assert Limits().mail_params == BASE_MAIL_PARAMS == {"SIZE", "BODY", "SMTPUTF8"}
    assert {"RET", "ENVID"} == DSN_MAIL_PARAMS
    assert {"NOTIFY", "ORCPT"} == DSN_RCPT_PARAMS
    assert AUTH_MAIL_PARAM == "AUTH"


@pytest.mark.parametrize(
    ("params", "make"),
    [("RET=FULL AUTH=<>", mail), ("ENVID=x", mail), ("NOTIFY=NEVER", rcpt), ("ORCPT=a;b", rcpt)],
)
def test_unsupported_unless_the_driver_enables_them(
    params: str, make: Callable[[str, Limits], Event]
) -> None:
    event = make(params, Limits())
    assert isinstance(event, Invalid)
    assert (event.reply.code, event.reply.status) == (555, "5.5.4")


def test_all_mail_parameters_together() -> None:
    event = mail("SIZE=10 ret=hdrs ENVID=Q+2Bx AUTH=<> BODY=8BITMIME")
    assert event == MailFrom(
        Address("a", "remote.test"),
        {"SIZE": "10", "RET": "HDRS", "ENVID": "Q+2Bx", "AUTH": "<>", "BODY": "8BITMIME"},
    )


def test_all_rcpt_parameters_together() -> None:
    event = rcpt("notify=delay,Failure ORCPT=rfc822;b+40example.test")
    assert event == RcptTo(
        Address("b", "example.test"),
        {"NOTIFY": "DELAY,FAILURE", "ORCPT": "rfc822;b+40example.test"},
    )


def test_duplicate_dsn_parameter() -> None:
    event = mail("RET=FULL RET=HDRS")
    assert event == Invalid(Reply(501, "5.5.4", "Duplicate parameter: RET"))


# -- MAIL AUTH= (RFC 4954 §5) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["<>", "a@b.example", "user+40example.test", "j+C3+B6@b.example", "+2B+3D", "<x>", "~!"],
)
def test_auth_param_good(value: str) -> None:
    event = mail(f"AUTH={value}")
    assert isinstance(event, MailFrom)
    assert event.params == {"AUTH": value}


@pytest.mark.parametrize(
    "item",
    [
        "AUTH",
        "AUTH=a+4",
        "AUTH=a+4a",
        "AUTH=a+",
        "AUTH=a+GG",
        "AUTH=a+0D+0A",
        "AUTH=a+00",
        "AUTH=a+1F",
        "AUTH=a+7F",
        "AUTH=jö@b.example",
    ],
)
def test_auth_param_bad(item: str) -> None:
    event = mail(item)
    assert event == Invalid(replies.BAD_AUTH_PARAM)
    assert str(event.reply).startswith("501 5.5.4 Bad AUTH parameter")


# -- MAIL RET= (RFC 3461 §4.3) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"), [("FULL", "FULL"), ("full", "FULL"), ("Hdrs", "HDRS")]
)
def test_ret_good(value: str, stored: str) -> None:
    event = mail(f"RET={value}")
    assert isinstance(event, MailFrom)
    assert event.params == {"RET": stored}


@pytest.mark.parametrize("item", ["RET", "RET=NONE", "RET=FULL,HDRS", "RET=hdr\u017f"])
def test_ret_bad(item: str) -> None:
    # "hdr\u017f".upper() == "HDRS": only ASCII values are upper-cased and compared.
    assert mail(item) == Invalid(replies.BAD_RET_PARAM)


# -- MAIL ENVID= (RFC 3461 §4.4) -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["abc", "a+20b", "+2B+3D", "x" * 100, "+41" * 100, "x" * 99 + "+7E", "<id@host>"],
)
def test_envid_good(value: str) -> None:
    event = mail(f"ENVID={value}")
    assert isinstance(event, MailFrom)
    assert event.params == {"ENVID": value}


@pytest.mark.parametrize(
    "item",
    [
        "ENVID",
        "ENVID=" + "x" * 101,
        "ENVID=" + "+41" * 101,
        "ENVID=a+0Db",
        "ENVID=a+00",
        "ENVID=a+7F",
        "ENVID=a+E9",
        "ENVID=a+2b",
        "ENVID=ab+",
        "ENVID=é",
    ],
)
def test_envid_bad(item: str) -> None:
    assert mail(item) == Invalid(replies.BAD_ENVID_PARAM)


# -- RCPT NOTIFY= (RFC 3461 §4.1) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("NEVER", "NEVER"),
        ("never", "NEVER"),
        ("SUCCESS", "SUCCESS"),
        ("failure", "FAILURE"),
        ("DELAY", "DELAY"),
        ("SUCCESS,FAILURE,DELAY", "SUCCESS,FAILURE,DELAY"),
        ("delay,success", "DELAY,SUCCESS"),
    ],
)
def test_notify_good(value: str, stored: str) -> None:
    event = rcpt(f"NOTIFY={value}")
    assert isinstance(event, RcptTo)
    assert event.params == {"NOTIFY": stored}


@pytest.mark.parametrize(
    "item",
    [
        "NOTIFY",
        "NOTIFY=NONE",
        "NOTIFY=NEVER,SUCCESS",
        "NOTIFY=SUCCESS,NEVER",
        "NOTIFY=NEVER,NEVER",
        "NOTIFY=SUCCESS,success",
        "NOTIFY=SUCCESS,",
        "NOTIFY=,DELAY",
        "NOTIFY=\u017fUCCESS",
    ],
)
def test_notify_bad(item: str) -> None:
    event = rcpt(item)
    assert event == Invalid(replies.BAD_NOTIFY_PARAM)
    assert str(event.reply).startswith("501 5.5.4 Bad NOTIFY parameter")


# -- RCPT ORCPT= (RFC 3461 §4.2) --------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "rfc822;b@example.test",
        "RFC822;b+2Bx@example.test",
        "rfc822;a+20b",
        "utf-8;j\\x{00F6}@example.test",
        "x-type!#;a;b",
        "rfc822;+3D",
    ],
)
def test_orcpt_good(value: str) -> None:
    event = rcpt(f"ORCPT={value}")
    assert isinstance(event, RcptTo)
    assert event.params == {"ORCPT": value}


@pytest.mark.parametrize(
    "item",
    [
        "ORCPT",
        "ORCPT=rfc822",
        "ORCPT=;b@example.test",
        "ORCPT=rfc822;",
        "ORCPT=rf(c;b@example.test",
        "ORCPT=rfc822;b+0D+0A@example.test",
        "ORCPT=rfc822;b+C3+B6@example.test",
        "ORCPT=rfc822;b+2b",
        "ORCPT=rfc822;jö@example.test",
    ],
)
def test_orcpt_bad(item: str) -> None:
    assert rcpt(item) == Invalid(replies.BAD_ORCPT_PARAM)


def test_bad_rcpt_parameter_keeps_mail_state() -> None:
    conn = in_state(MAIL, DSN)
    events, out = drive(conn, b"RCPT TO:<b@example.test> NOTIFY=NO\r\nRCPT TO:<b@example.test>\r\n")
    assert events == [Invalid(replies.BAD_NOTIFY_PARAM), RcptTo(Address("b", "example.test"), {})]
    assert out.startswith(b"501 5.5.4 Bad NOTIFY parameter")
