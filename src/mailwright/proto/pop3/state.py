"""Every POP3 sequencing rule, in one table (RFC 1939 §3-§6, RFC 2449 §5, RFC 2595 §4,
RFC 5034 §4).

Handlers never check sequence: the machine looks up (state, verb) here before it
yields a command, applies ``on_command`` when it yields one, and ``after_reply`` once
the reply has been sent.

States:
- AUTHORIZATION (RFC 1939 §4): greeting sent, nobody logged in. Two sub-states:
  USER (a USER was accepted, PASS expected: RFC 1939 §7) and SASL (an AUTH exchange
  is under way: every line is a SASL response, not a command: RFC 5034 §4);
- TRANSACTION (RFC 1939 §5): logged in, the maildrop is open;
- UPDATE (RFC 1939 §6): QUIT was read in TRANSACTION; the driver removes the messages
  marked deleted, then answers, and the session is CLOSED;
- TLS: STLS was answered +OK; nothing is read until the handshake is done (RFC 2595 §4);
- CLOSED.
"""

from __future__ import annotations

import enum

from mailwright.core.errors import LocalProtocolError
from mailwright.proto.pop3 import replies
from mailwright.proto.pop3.replies import Continuation, Pop3Reply, Response


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    USER = "user"  # AUTHORIZATION, after USER was accepted
    SASL = "sasl"  # AUTHORIZATION, during an AUTH exchange
    TRANSACTION = "transaction"
    UPDATE = "update"
    TLS = "tls"  # STLS answered +OK; waiting for the handshake
    CLOSED = "closed"


class Verb(enum.Enum):
    USER = "USER"
    PASS = "PASS"
    AUTH = "AUTH"
    CAPA = "CAPA"
    STAT = "STAT"
    LIST = "LIST"
    RETR = "RETR"
    DELE = "DELE"
    NOOP = "NOOP"
    RSET = "RSET"
    TOP = "TOP"
    UIDL = "UIDL"
    QUIT = "QUIT"
    STLS = "STLS"
    AUTH_RESPONSE = "<sasl response>"


_MAILDROP = frozenset(
    {Verb.STAT, Verb.LIST, Verb.RETR, Verb.DELE, Verb.NOOP, Verb.RSET, Verb.TOP, Verb.UIDL}
)
_LOGIN = frozenset({Verb.USER, Verb.PASS, Verb.AUTH})

# For each state: the verbs allowed, and the reply for each verb that is not.
# RFC 2449 §5: CAPA is valid in AUTHORIZATION and TRANSACTION; QUIT is valid in both.
_RULES: dict[State, tuple[frozenset[Verb], dict[Verb, Pop3Reply]]] = {
    State.AUTHORIZATION: (
        frozenset({Verb.USER, Verb.AUTH, Verb.CAPA, Verb.QUIT, Verb.STLS}),
        {Verb.PASS: replies.SEND_USER_FIRST} | dict.fromkeys(_MAILDROP, replies.NOT_AUTHENTICATED),
    ),
    # RFC 1939 §7 (USER): after +OK the client sends PASS or QUIT. A second USER starts
    # over (clients retry a mistyped name); CAPA changes nothing.
    State.USER: (
        frozenset({Verb.PASS, Verb.USER, Verb.CAPA, Verb.QUIT}),
        {Verb.AUTH: replies.SEND_PASS, Verb.STLS: replies.SEND_PASS}
        | dict.fromkeys(_MAILDROP, replies.NOT_AUTHENTICATED),
    ),
    State.SASL: (frozenset({Verb.AUTH_RESPONSE}), {}),
    State.TRANSACTION: (
        frozenset(_MAILDROP | {Verb.CAPA, Verb.QUIT}),
        # RFC 2595 §4: STLS only in AUTHORIZATION.
        dict.fromkeys(_LOGIN, replies.ALREADY_AUTHENTICATED)
        | {Verb.STLS: replies.STLS_AFTER_LOGIN},
    ),
}

# Commands whose positive response is multi-line (RFC 1939 §5-§7, RFC 2449 §5); LIST and
# UIDL only without an argument.
_MULTILINE = frozenset({Verb.CAPA, Verb.RETR, Verb.TOP})
_MULTILINE_WITHOUT_ARGUMENT = frozenset({Verb.LIST, Verb.UIDL})


def check(state: State, verb: Verb, *, tls_active: bool = False) -> Pop3Reply | None:
    """None if ``verb`` may be used in ``state``; otherwise the reply that refuses it."""
    allowed, refusals = _RULES.get(state, (frozenset(), {}))
    if verb in allowed:
        # RFC 2595 §4: STLS once, before TLS (also refused on an implicit-TLS port).
        if verb is Verb.STLS and tls_active:
            return replies.TLS_ACTIVE
        return None
    return refusals.get(verb, replies.BAD_SEQUENCE)


def on_command(state: State, verb: Verb) -> State:
    """The state while ``verb`` (allowed in ``state``) awaits its reply.

    RFC 1939 §6: QUIT in TRANSACTION enters UPDATE at once; the driver's reply follows
    the removal of the deleted messages.
    """
    if verb is Verb.QUIT and state is State.TRANSACTION:
        return State.UPDATE
    return state


def multiline_allowed(verb: Verb, has_argument: bool) -> bool:
    """Whether a +OK to ``verb`` carries a multi-line body."""
    return verb in _MULTILINE or (verb in _MULTILINE_WITHOUT_ARGUMENT and not has_argument)


def after_reply(state: State, verb: Verb, reply: Response) -> State:
    """The state once ``reply`` to ``verb`` (sent in ``state``) has gone out."""
    if isinstance(reply, Continuation):
        if verb not in (Verb.AUTH, Verb.AUTH_RESPONSE):
            raise LocalProtocolError(f"a SASL continuation is no reply to {verb.value}")
        return State.SASL
    ok = reply.ok
    match verb:
        case Verb.QUIT:
            return State.CLOSED  # RFC 1939 §6: -ERR to QUIT still ends the session
        case Verb.USER:
            # RFC 1939 §7: a refused USER (or PASS) means starting over.
            return State.USER if ok else State.AUTHORIZATION
        case Verb.PASS | Verb.AUTH | Verb.AUTH_RESPONSE:
            # RFC 5034 §4: -ERR ends the exchange (cancelled, failed, malformed).
            return State.TRANSACTION if ok else State.AUTHORIZATION
        case Verb.STLS:
            return State.TLS if ok else state
        case _:
            return state
