"""Recipient-stage policy: who may be a recipient, and how many (RFC 5321 §3.6, §4.5.3.1.8)."""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.core.reply import Reply
from mailwright.policy.verdict import ACCEPT, Defer, Reject, Verdict

RELAY_DENIED = Reply(550, "5.7.1", "Relay access denied")
UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    local_domain: bool  # the recipient's domain is one of ours
    known: bool  # it resolves to at least one local mailbox
    may_relay: bool  # authenticated, or from a trusted network
    accepted_so_far: int
    max_recipients: int


def check_recipient(f: RecipientFacts) -> Verdict:
    if f.accepted_so_far >= f.max_recipients:
        # RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client retries the rest.
        return Defer(TOO_MANY_RECIPIENTS, "limit.recipients")
    if not f.local_domain:
        # Never an open relay: foreign domains only for clients allowed to relay
        # (the outbound queue that relays them arrives with the submission issue).
        return Reject(RELAY_DENIED, "relay.denied")
    if not f.known:
        return Reject(UNKNOWN_USER, "recipient.unknown")
    return ACCEPT
