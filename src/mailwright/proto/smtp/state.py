"""Every SMTP sequencing rule, in one table (RFC 5321 §4.1.4, RFC 3030 §2, RFC 3207 §4,
RFC 4954 §4).

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
    AUTH = "auth"  # AUTH answered 334; the next line is a SASL response, not a command
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
    AUTH = "AUTH"  # also the pending verb of each response line in the SASL exchange
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
# RFC 4954 §4: AUTH is not permitted during a mail transaction, and after a successful
# AUTH every further AUTH is refused with 503.
_AUTH_IN_TX = _seq("AUTH not permitted during a mail transaction")
_AUTHENTICATED = _seq("Already authenticated")

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
            Verb.AUTH: _NEED_HELO,
        },
    ),
    State.GREETED: (
        frozenset(_ALWAYS | {Verb.MAIL, Verb.STARTTLS, Verb.AUTH}),
        {
            Verb.RCPT: _NEED_MAIL,
            Verb.DATA: _seq("Need MAIL command"),
            Verb.BDAT: _seq("Need MAIL command"),
        },
    ),
    State.MAIL: (
        frozenset(_ALWAYS | {Verb.RCPT}),
        {
            Verb.MAIL: _NESTED,
            Verb.DATA: _NEED_RCPT,
            Verb.BDAT: _NEED_RCPT,
            Verb.STARTTLS: _IN_TX,
            Verb.AUTH: _AUTH_IN_TX,
        },
    ),
    State.RCPT: (
        frozenset(_ALWAYS | {Verb.RCPT, Verb.DATA, Verb.BDAT}),
        {Verb.MAIL: _NESTED, Verb.STARTTLS: _IN_TX, Verb.AUTH: _AUTH_IN_TX},
    ),
    State.BDAT_MORE: (
        frozenset({Verb.BDAT, Verb.RSET, Verb.NOOP, Verb.QUIT}),
        {},
    ),
}
# Once a client has authenticated, these verbs are refused wherever the table above
# would allow them.
_ONCE_AUTHENTICATED: dict[Verb, Reply] = {Verb.AUTH: _AUTHENTICATED}


def check(state: State, verb: Verb, *, authenticated: bool = False) -> Reply | None:
    """None if ``verb`` may be used in ``state``; otherwise the reply that refuses it."""
    allowed, refusals = _RULES.get(state, (frozenset(), {}))
    if verb in allowed:
        return _ONCE_AUTHENTICATED.get(verb) if authenticated else None
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
        case Verb.AUTH:
            # RFC 4954 §4: 334 carries a challenge and asks for one more response line;
            # any other reply (235, or a refusal) ends the exchange.
            return State.AUTH if reply.code == 334 else State.GREETED
        case _:
            return state


def authenticates(verb: Verb, reply: Reply) -> bool:
    """Whether ``reply`` to ``verb`` completes an authentication (RFC 4954 §4: 235)."""
    return verb is Verb.AUTH and reply.code == 235
