"""state.py's table, directly (RFC 9051 §3 and §6)."""

from __future__ import annotations

import pytest

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap import response as r
from mailwright.proto.imap.state import (
    ALLOWED,
    Mode,
    Refusal,
    State,
    Verb,
    after_completion,
    check,
    continuation_mode,
    on_authenticated,
    on_logout,
    on_selected,
    on_unselected,
)

ANY = [Verb.CAPABILITY, Verb.NOOP, Verb.LOGOUT, Verb.ID]
NOT_AUTH = [Verb.STARTTLS, Verb.AUTHENTICATE, Verb.LOGIN]
SELECTED_ONLY = [v for v in Verb if ALLOWED[v] == frozenset({State.SELECTED})]


def test_every_verb_has_a_rule() -> None:
    assert set(ALLOWED) == set(Verb)
    assert {v.value for v in SELECTED_ONLY} >= {"FETCH", "UID FETCH", "CHECK", "UID EXPUNGE"}


@pytest.mark.parametrize("verb", ANY)
@pytest.mark.parametrize("state", [State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED])
def test_any_state_commands(verb: Verb, state: State) -> None:
    assert check(state, verb) is None


@pytest.mark.parametrize("verb", NOT_AUTH)
def test_login_commands_only_before_login(verb: Verb) -> None:
    assert check(State.NOT_AUTHENTICATED, verb) is None
    refusal = check(State.AUTHENTICATED, verb)
    assert refusal == Refusal(
        "BAD", f"{verb.value} not allowed in the authenticated state: already authenticated"
    )
    refusal = check(State.SELECTED, verb)
    assert refusal is not None and "selected state: already authenticated" in refusal.text


@pytest.mark.parametrize("verb", SELECTED_ONLY)
def test_mailbox_commands_need_a_selection(verb: Verb) -> None:
    assert check(State.SELECTED, verb) is None
    assert check(State.AUTHENTICATED, verb) == Refusal(
        "BAD", f"{verb.value} not allowed in the authenticated state: select a mailbox first"
    )
    assert check(State.NOT_AUTHENTICATED, verb) == Refusal(
        "BAD", f"{verb.value} not allowed in the not authenticated state: log in first"
    )


def test_enable_only_before_select() -> None:
    # RFC 5161 §3.1
    assert check(State.AUTHENTICATED, Verb.ENABLE) is None
    refusal = check(State.SELECTED, Verb.ENABLE)
    assert refusal is not None and refusal.text.endswith("only before a mailbox is selected")


def test_no_commands_in_logout() -> None:
    refusal = check(State.LOGOUT, Verb.NOOP)
    assert refusal == Refusal("BAD", "NOOP not allowed in the logout state: the session is ending")


def test_starttls_and_compress_once() -> None:
    assert check(State.NOT_AUTHENTICATED, Verb.STARTTLS, tls_active=True) == Refusal(
        "BAD", "TLS is already active"
    )
    assert check(State.SELECTED, Verb.COMPRESS, compressing=True) == Refusal(
        "NO", "Compression is already active", r.COMPRESSIONACTIVE
    )
    assert check(State.AUTHENTICATED, Verb.COMPRESS) is None
    # the state's refusal comes first
    assert check(State.NOT_AUTHENTICATED, Verb.COMPRESS, compressing=True) is not None


def test_continuations() -> None:
    assert continuation_mode(Verb.IDLE) is Mode.IDLE
    assert continuation_mode(Verb.AUTHENTICATE) is Mode.AUTHENTICATE
    with pytest.raises(LocalProtocolError, match="accept_literal"):
        continuation_mode(Verb.APPEND)


@pytest.mark.parametrize(
    ("state", "verb", "status", "result"),
    [
        (State.NOT_AUTHENTICATED, Verb.STARTTLS, "OK", (State.NOT_AUTHENTICATED, Mode.TLS)),
        (State.NOT_AUTHENTICATED, Verb.STARTTLS, "NO", (State.NOT_AUTHENTICATED, Mode.COMMAND)),
        (State.SELECTED, Verb.COMPRESS, "OK", (State.SELECTED, Mode.COMPRESS)),
        (State.SELECTED, Verb.COMPRESS, "NO", (State.SELECTED, Mode.COMMAND)),
        (State.LOGOUT, Verb.LOGOUT, "OK", (State.CLOSED, Mode.COMMAND)),
        (State.AUTHENTICATED, Verb.IDLE, "OK", (State.AUTHENTICATED, Mode.COMMAND)),
        (State.AUTHENTICATED, None, "BAD", (State.AUTHENTICATED, Mode.COMMAND)),
    ],
)
def test_after_completion(
    state: State, verb: Verb | None, status: str, result: tuple[State, Mode]
) -> None:
    assert after_completion(state, verb, status) == result


def test_driver_transitions() -> None:
    assert on_authenticated(State.NOT_AUTHENTICATED) is State.AUTHENTICATED
    assert on_selected(State.AUTHENTICATED) is State.SELECTED
    assert on_selected(State.SELECTED) is State.SELECTED
    assert on_unselected(State.SELECTED) is State.AUTHENTICATED
    assert on_unselected(State.AUTHENTICATED) is State.AUTHENTICATED
    for state in (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED, State.LOGOUT):
        assert on_logout(state) is State.LOGOUT


@pytest.mark.parametrize(
    ("transition", "state"),
    [
        (on_authenticated, State.AUTHENTICATED),
        (on_authenticated, State.CLOSED),
        (on_selected, State.NOT_AUTHENTICATED),
        (on_selected, State.LOGOUT),
        (on_unselected, State.NOT_AUTHENTICATED),
        (on_logout, State.CLOSED),
    ],
)
def test_driver_transitions_misused(transition: object, state: State) -> None:
    with pytest.raises(LocalProtocolError):
        transition(state)  # type: ignore[operator]
