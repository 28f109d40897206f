"""Every SMTP sequencing rule, in one table (RFC 5321 §4.1.4, RFC 3030 §2, RFC 3207 §4).

Handlers never check sequence: the machine looks up (state, verb) here before it
yields a command, and applies ``after_reply`` once the reply has been sent.
"""

from __future__ import annotations

import enum

from mailwright.core.reply import Reply


class State(enum.Enum):
    CONNECTED = "connected"  # greeting sent, no EHLO/HELO yet
    GREETED = "greeted"  # EHLO/HELO done, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading DATA content
    BDAT = "bdat"  # reading one BDAT chunk
    BDAT_MORE = "bdat_more"  # between BDAT chunks of one message
    TLS = "tls"  # STARTTLS answered 220; waiting for the handshake
    CLOSED = "closed"


class Verb(enum.Enum):
    EHLO = "EHLO"
    HELO = "HELO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BDAT = "BDAT"
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"
    HELP = "HELP"
    VRFY = "VRFY"
    STARTTLS = "STARTTLS"
    END_OF_DATA = "<end of data>"


def _seq(text: str) -> Reply:
    return Reply(503, "5.5.1", text)


_ALWAYS = {Verb.RSET, Verb.NOOP, Verb.QUIT, Verb.HELP, Verb.VRFY, Verb.EHLO, Verb.HELO}
_NEED_HELO = _seq("Send HELO/EHLO first")
_NESTED = _seq("Nested MAIL command")
_NEED_MAIL = _seq("Need MAIL before RCPT")
_NEED_RCPT = _seq("Need RCPT before DATA")
_IN_TX = _seq("STARTTLS not allowed during a mail transaction")
_AFTER_BDAT = _seq("Only BDAT, RSET, NOOP or QUIT may follow BDAT")

# For each state: the verbs allowed, and the reply for each verb that is not.
_RULES: dict[State, tuple[frozenset[Verb], dict[Verb, Reply]]] = {
    State.CONNECTED: (
        frozenset(_ALWAYS),
        {
            Verb.MAIL: _NEED_HELO,
            Verb.RCPT: _NEED_HELO,
            Verb.DATA: _NEED_HELO,
            Verb.BDAT: _NEED_HELO,
            Verb.STARTTLS: _NEED_HELO,
        },
    ),
    State.GREETED: (
        frozenset(_ALWAYS | {Verb.MAIL, Verb.STARTTLS}),
        {
            Verb.RCPT: _NEED_MAIL,
            Verb.DATA: _seq("Need MAIL command"),
            Verb.BDAT: _seq("Need MAIL command"),
        },
    ),
    State.MAIL: (
        frozenset(_ALWAYS | {Verb.RCPT}),
        {Verb.MAIL: _NESTED, Verb.DATA: _NEED_RCPT, Verb.BDAT: _NEED_RCPT, Verb.STARTTLS: _IN_TX},
    ),
    State.RCPT: (
        frozenset(_ALWAYS | {Verb.RCPT, Verb.DATA, Verb.BDAT}),
        {Verb.MAIL: _NESTED, Verb.STARTTLS: _IN_TX},
    ),
    State.BDAT_MORE: (
        frozenset({Verb.BDAT, Verb.RSET, Verb.NOOP, Verb.QUIT}),
        {},
    ),
}


def check(state: State, verb: Verb) -> Reply | None:
    """None if ``verb`` may be used in ``state``; otherwise the reply that refuses it."""
    allowed, refusals = _RULES.get(state, (frozenset(), {}))
    if verb in allowed:
        return None
    return refusals.get(
        verb, _AFTER_BDAT if state is State.BDAT_MORE else _seq("Bad sequence of commands")
    )


def after_reply(state: State, verb: Verb, reply: Reply, *, last_chunk: bool = True) -> State:
    """The state once ``reply`` to ``verb`` (sent in ``state``) has gone out."""
    if reply.code == 421:
        return State.CLOSED
    ok = reply.is_positive
    match verb:
        case Verb.QUIT:
            return State.CLOSED
        case Verb.EHLO | Verb.HELO:
            return State.GREETED if ok else state
        case Verb.RSET:
            return State.CONNECTED if state is State.CONNECTED else State.GREETED
        case Verb.MAIL:
            return State.MAIL if ok else state
        case Verb.RCPT:
            return State.RCPT if ok else state
        case Verb.DATA:
            return State.DATA if reply.code == 354 else state
        case Verb.END_OF_DATA:
            if not last_chunk and ok:
                return State.BDAT_MORE
            return State.GREETED
        case Verb.STARTTLS:
            return State.TLS if ok else state
        case _:
            return state
