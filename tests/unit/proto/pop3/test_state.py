"""state.py's table, directly: the rules the machine consults (RFC 1939 §3-§6, RFC 5034)."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.replies import Continuation, Pop3Reply, Response
from mailwright.proto.pop3.state import (
    State,
    Verb,
    after_reply,
    check,
    multiline_allowed,
    on_command,
)

COMMAND_VERBS = [v for v in Verb if v is not Verb.AUTH_RESPONSE]
OK = replies.OK
FAIL = Pop3Reply(False, "no")
CHALLENGE = Continuation("")


@pytest.mark.parametrize("state", [State.UPDATE, State.TLS, State.CLOSED, State.SASL])
@pytest.mark.parametrize("verb", COMMAND_VERBS)
def test_no_command_outside_command_states(state: State, verb: Verb) -> None:
    assert check(state, verb) == replies.BAD_SEQUENCE


@pytest.mark.parametrize("state", [s for s in State if s is not State.SASL])
def test_sasl_responses_only_in_sasl_state(state: State) -> None:
    assert check(state, Verb.AUTH_RESPONSE) == replies.BAD_SEQUENCE
    assert check(State.SASL, Verb.AUTH_RESPONSE) is None


def test_stls_refused_once_tls_is_active() -> None:
    assert check(State.AUTHORIZATION, Verb.STLS) is None
    assert check(State.AUTHORIZATION, Verb.STLS, tls_active=True) == replies.TLS_ACTIVE
    # the state's own refusal comes first
    assert check(State.USER, Verb.STLS, tls_active=True) == replies.SEND_PASS
    assert check(State.TRANSACTION, Verb.STLS, tls_active=True) == replies.STLS_AFTER_LOGIN


@pytest.mark.parametrize(
    ("state", "verb", "new"),
    [
        (State.TRANSACTION, Verb.QUIT, State.UPDATE),
        (State.AUTHORIZATION, Verb.QUIT, State.AUTHORIZATION),
        (State.USER, Verb.QUIT, State.USER),
        (State.TRANSACTION, Verb.DELE, State.TRANSACTION),
        (State.AUTHORIZATION, Verb.USER, State.AUTHORIZATION),
    ],
)
def test_on_command(state: State, verb: Verb, new: State) -> None:
    assert on_command(state, verb) is new


@pytest.mark.parametrize(
    ("state", "verb", "reply", "new"),
    [
        (State.AUTHORIZATION, Verb.QUIT, replies.BYE, State.CLOSED),
        (State.UPDATE, Verb.QUIT, replies.BYE, State.CLOSED),
        (State.UPDATE, Verb.QUIT, replies.NOT_ALL_REMOVED, State.CLOSED),
        (State.AUTHORIZATION, Verb.USER, replies.USER_OK, State.USER),
        (State.AUTHORIZATION, Verb.USER, FAIL, State.AUTHORIZATION),
        (State.USER, Verb.USER, replies.USER_OK, State.USER),
        (State.USER, Verb.USER, FAIL, State.AUTHORIZATION),
        (State.USER, Verb.PASS, replies.LOGGED_IN, State.TRANSACTION),
        (State.USER, Verb.PASS, replies.AUTH_FAILED, State.AUTHORIZATION),
        (State.USER, Verb.PASS, replies.IN_USE, State.AUTHORIZATION),
        (State.USER, Verb.CAPA, OK, State.USER),
        (State.USER, Verb.NOOP, FAIL, State.USER),  # a refusal by the machine
        (State.AUTHORIZATION, Verb.AUTH, CHALLENGE, State.SASL),
        (State.AUTHORIZATION, Verb.AUTH, replies.LOGGED_IN, State.TRANSACTION),
        (State.AUTHORIZATION, Verb.AUTH, replies.UNKNOWN_MECHANISM, State.AUTHORIZATION),
        (State.SASL, Verb.AUTH_RESPONSE, CHALLENGE, State.SASL),
        (State.SASL, Verb.AUTH_RESPONSE, replies.LOGGED_IN, State.TRANSACTION),
        (State.SASL, Verb.AUTH_RESPONSE, replies.AUTH_CANCELLED, State.AUTHORIZATION),
        (State.AUTHORIZATION, Verb.STLS, replies.BEGIN_TLS, State.TLS),
        (State.AUTHORIZATION, Verb.STLS, replies.TLS_UNAVAILABLE, State.AUTHORIZATION),
        (State.TRANSACTION, Verb.RETR, replies.NO_SUCH_MESSAGE, State.TRANSACTION),
        (State.TRANSACTION, Verb.DELE, replies.DELETED, State.TRANSACTION),
        (State.TRANSACTION, Verb.RSET, replies.RESET_OK, State.TRANSACTION),
        (State.TRANSACTION, Verb.STAT, OK, State.TRANSACTION),
    ],
)
def test_after_reply(state: State, verb: Verb, reply: Response, new: State) -> None:
    assert after_reply(state, verb, reply) is new


@pytest.mark.parametrize("verb", [v for v in Verb if v not in (Verb.AUTH, Verb.AUTH_RESPONSE)])
def test_continuation_answers_only_auth(verb: Verb) -> None:
    with pytest.raises(LocalProtocolError, match=verb.value):
        after_reply(State.TRANSACTION, verb, CHALLENGE)


@pytest.mark.parametrize(
    ("verb", "has_argument", "allowed"),
    [
        (Verb.CAPA, False, True),
        (Verb.RETR, True, True),
        (Verb.TOP, True, True),
        (Verb.LIST, False, True),
        (Verb.LIST, True, False),
        (Verb.UIDL, False, True),
        (Verb.UIDL, True, False),
        (Verb.STAT, False, False),
        (Verb.DELE, True, False),
        (Verb.USER, True, False),
        (Verb.AUTH, True, False),
        (Verb.AUTH_RESPONSE, True, False),
    ],
)
def test_multiline_allowed(verb: Verb, has_argument: bool, allowed: bool) -> None:
    assert multiline_allowed(verb, has_argument) is allowed
