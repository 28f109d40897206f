"""One SASL exchange as POP3's AUTH and IMAP's AUTHENTICATE run it: the client's base64
lines decoded, the mechanism stepped, and acting as another user refused."""

from __future__ import annotations

from mailwright.proto.sasl.mechanism import (
    Challenge,
    Credentials,
    Failure,
    Mechanism,
    decode_response,
    encode_challenge,
    server_mechanism,
)

# What a step gives: a challenge to send (base64 text), the credentials to check, or why
# the exchange failed (for the log, never for the client).
Outcome = str | Credentials | Failure


class SaslExchange:
    def __init__(self, mechanism: Mechanism) -> None:
        self._mechanism = mechanism

    @classmethod
    def start(cls, name: str) -> SaslExchange | None:
        """An exchange of mechanism ``name``; None when it is not offered."""
        mechanism = server_mechanism(name)
        return None if mechanism is None else cls(mechanism)

    def step(self, data: str | bytes | None, *, initial: bool = False) -> Outcome:
        """Feed the client's base64 ``data`` (None: none yet; ``initial``: a SASL initial
        response, where "=" is an empty one)."""
        decoded: bytes | None = None
        if data is not None:
            result = decode_response(data, initial=initial)
            if isinstance(result, Failure):
                return result
            decoded = result
        step = self._mechanism.step(decoded)
        if isinstance(step, Challenge):
            return encode_challenge(step.data)
        # Acting as another user (RFC 4616 §2) is not offered.
        if isinstance(step, Credentials) and step.authzid.lower() not in (
            "",
            step.username.lower(),
        ):
            return Failure("authzid differs from authcid")
        return step
