"""Every IMAP sequencing rule, in one table (RFC 9051 §3 and §6, RFC 3501 §3).

Handlers never check sequence: the machine looks up (state, verb) here before it yields
a command (or asks for a literal of one), and applies the transitions below.

States (RFC 9051 §3):
- NOT_AUTHENTICATED: greeting sent, nobody logged in;
- AUTHENTICATED: logged in, no mailbox selected;
- SELECTED: a mailbox is selected (read-only for EXAMINE);
- LOGOUT: LOGOUT was read or BYE sent; the last responses go out, then CLOSED;
- CLOSED: the machine yields only ``CLOSED``.

Modes (sub-states within a state): COMMAND (reading commands); IDLE (RFC 2177: between
the "+" and DONE); AUTHENTICATE (RFC 9051 §6.2.2: a SASL exchange is under way, each line
is a response); APPEND (RFC 9051 §6.3.12: the message literal is being streamed); TLS
(STARTTLS answered OK; nothing is read until the handshake, RFC 9051 §6.2.1); COMPRESS
(COMPRESS answered OK; input waits for ``compress_started``, RFC 4978 §3).

The driver tells the machine of login, SELECT/EXAMINE, CLOSE/UNSELECT and LOGOUT
(``authenticated``, ``selected``, ``unselected``, ``logout``): the functions
``on_authenticated`` and friends below say from which states that is allowed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.imap import response
from mailwright.proto.imap.response import Code


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"
    CLOSED = "closed"


class Mode(enum.Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTHENTICATE = "authenticate"
    APPEND = "append"
    TLS = "tls"
    COMPRESS = "compress"


class Verb(enum.Enum):
    CAPABILITY = "CAPABILITY"
    NOOP = "NOOP"
    LOGOUT = "LOGOUT"
    ID = "ID"
    STARTTLS = "STARTTLS"
    AUTHENTICATE = "AUTHENTICATE"
    LOGIN = "LOGIN"
    ENABLE = "ENABLE"
    SELECT = "SELECT"
    EXAMINE = "EXAMINE"
    CREATE = "CREATE"
    DELETE = "DELETE"
    RENAME = "RENAME"
    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    LIST = "LIST"
    LSUB = "LSUB"
    NAMESPACE = "NAMESPACE"
    STATUS = "STATUS"
    APPEND = "APPEND"
    IDLE = "IDLE"
    GETQUOTA = "GETQUOTA"
    GETQUOTAROOT = "GETQUOTAROOT"
    SETQUOTA = "SETQUOTA"
    COMPRESS = "COMPRESS"
    CHECK = "CHECK"
    CLOSE = "CLOSE"
    UNSELECT = "UNSELECT"
    EXPUNGE = "EXPUNGE"
    SEARCH = "SEARCH"
    FETCH = "FETCH"
    STORE = "STORE"
    COPY = "COPY"
    MOVE = "MOVE"
    SORT = "SORT"
    THREAD = "THREAD"
    UID_EXPUNGE = "UID EXPUNGE"
    UID_SEARCH = "UID SEARCH"
    UID_FETCH = "UID FETCH"
    UID_STORE = "UID STORE"
    UID_COPY = "UID COPY"
    UID_MOVE = "UID MOVE"
    UID_SORT = "UID SORT"
    UID_THREAD = "UID THREAD"


_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED})
_LOGGED_IN = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})
_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})

# The table: the states in which each verb may be used.
ALLOWED: dict[Verb, frozenset[State]] = {
    # RFC 9051 §6.1: any state; RFC 2971 §3: ID too.
    Verb.CAPABILITY: _ANY,
    Verb.NOOP: _ANY,
    Verb.LOGOUT: _ANY,
    Verb.ID: _ANY,
    # RFC 9051 §6.2: not authenticated only.
    Verb.STARTTLS: _NOT_AUTH,
    Verb.AUTHENTICATE: _NOT_AUTH,
    Verb.LOGIN: _NOT_AUTH,
    # RFC 5161 §3.1 / RFC 9051 §6.3.1: ENABLE before any mailbox is selected.
    Verb.ENABLE: _AUTH,
    # RFC 9051 §6.3: authenticated (and so also selected, §3.3).
    Verb.SELECT: _LOGGED_IN,
    Verb.EXAMINE: _LOGGED_IN,
    Verb.CREATE: _LOGGED_IN,
    Verb.DELETE: _LOGGED_IN,
    Verb.RENAME: _LOGGED_IN,
    Verb.SUBSCRIBE: _LOGGED_IN,
    Verb.UNSUBSCRIBE: _LOGGED_IN,
    Verb.LIST: _LOGGED_IN,
    Verb.LSUB: _LOGGED_IN,
    Verb.NAMESPACE: _LOGGED_IN,
    Verb.STATUS: _LOGGED_IN,
    Verb.APPEND: _LOGGED_IN,
    Verb.IDLE: _LOGGED_IN,  # RFC 2177 §3
    Verb.GETQUOTA: _LOGGED_IN,  # RFC 9208 §4
    Verb.GETQUOTAROOT: _LOGGED_IN,
    Verb.SETQUOTA: _LOGGED_IN,
    Verb.COMPRESS: _LOGGED_IN,  # RFC 4978 §3: after login, so credentials go uncompressed
    # RFC 9051 §6.4: selected only (the UID forms, RFC 4315, RFC 5256, RFC 6851, too).
    **dict.fromkeys(
        [
            Verb.CHECK,
            Verb.CLOSE,
            Verb.UNSELECT,
            Verb.EXPUNGE,
            Verb.SEARCH,
            Verb.FETCH,
            Verb.STORE,
            Verb.COPY,
            Verb.MOVE,
            Verb.SORT,
            Verb.THREAD,
            Verb.UID_EXPUNGE,
            Verb.UID_SEARCH,
            Verb.UID_FETCH,
            Verb.UID_STORE,
            Verb.UID_COPY,
            Verb.UID_MOVE,
            Verb.UID_SORT,
            Verb.UID_THREAD,
        ],
        _SELECTED,
    ),
}

_HINT = {
    State.NOT_AUTHENTICATED: "log in first",
    State.AUTHENTICATED: "select a mailbox first",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command may not run now: the status, text and code of its tagged reply."""

    status: str
    text: str
    code: Code | None = None


def check(
    state: State, verb: Verb, *, tls_active: bool = False, compressing: bool = False
) -> Refusal | None:
    """None if ``verb`` may be used in ``state``; otherwise the refusal.

    RFC 9051 §6 answers a command in the wrong state with BAD; the text names the state.
    """
    allowed = ALLOWED[verb]
    if state not in allowed:
        if state is State.SELECTED and verb is Verb.ENABLE:
            hint = "only before a mailbox is selected"
        elif state in (State.AUTHENTICATED, State.SELECTED) and allowed == _NOT_AUTH:
            hint = "already authenticated"
        else:
            hint = _HINT.get(state, "the session is ending")
        return Refusal("BAD", f"{verb.value} not allowed in the {state.value} state: {hint}")
    if verb is Verb.STARTTLS and tls_active:
        # RFC 9051 §6.2.1: BAD - STARTTLS after a successful TLS negotiation.
        return Refusal("BAD", "TLS is already active")
    if verb is Verb.COMPRESS and compressing:
        return Refusal("NO", "Compression is already active", response.COMPRESSIONACTIVE)
    return None


def continuation_mode(verb: Verb) -> Mode:
    """The mode a "+" continuation from the driver puts ``verb`` in."""
    if verb is Verb.IDLE:
        return Mode.IDLE
    if verb is Verb.AUTHENTICATE:
        return Mode.AUTHENTICATE
    raise LocalProtocolError(f"no continuation for {verb.value} (literals use accept_literal)")


def after_completion(state: State, verb: Verb | None, status: str) -> tuple[State, Mode]:
    """State and mode once the tagged ``status`` completing ``verb`` has been sent
    (``verb`` None: the completion of a refused command)."""
    if state is State.LOGOUT:
        return State.CLOSED, Mode.COMMAND
    if status == "OK" and verb is Verb.STARTTLS:
        # RFC 9051 §6.2.1: the TLS negotiation starts right after the OK.
        return state, Mode.TLS
    if status == "OK" and verb is Verb.COMPRESS:
        # RFC 4978 §3: compression starts right after the OK.
        return state, Mode.COMPRESS
    return state, Mode.COMMAND


def on_authenticated(state: State) -> State:
    if state is not State.NOT_AUTHENTICATED:
        raise LocalProtocolError(f"authenticated() in the {state.value} state")
    return State.AUTHENTICATED


def on_selected(state: State) -> State:
    # RFC 9051 §6.3.2: SELECT while selected selects the new mailbox.
    if state not in _LOGGED_IN:
        raise LocalProtocolError(f"selected() in the {state.value} state")
    return State.SELECTED


def on_unselected(state: State) -> State:
    # CLOSE, UNSELECT, or a failed SELECT (RFC 9051 §6.3.2: it deselects); also fine
    # when nothing was selected.
    if state not in _LOGGED_IN:
        raise LocalProtocolError(f"unselected() in the {state.value} state")
    return State.AUTHENTICATED


def on_logout(state: State) -> State:
    if state is State.CLOSED:
        raise LocalProtocolError("logout() after the session closed")
    return State.LOGOUT
