"""Recipient-stage policy: who may be a recipient, and how many (RFC 5321 §3.6, §4.5.3.1.8)."""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.core.reply import Reply
from mailwright.policy.verdict import ACCEPT, Defer, Reject, Verdict

RELAY_DENIED = Reply(550, "5.7.1", "Relay access denied")
UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
# RFC 3463 §3.3: X.2.2 mailbox full; temporary while the user may make room, permanent
# when the message is larger than the whole quota.
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")
TOO_BIG_FOR_MAILBOX = Reply(552, "5.2.2", "Message larger than the recipient's quota")


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    local_domain: bool  # the recipient's domain is one of ours
    known: bool  # it resolves to at least one local mailbox
    may_relay: bool  # authenticated, or from a trusted network
    accepted_so_far: int
    max_recipients: int
    # (quota_bytes, used_bytes) of each account the recipient reaches; None = no quota.
    quotas: tuple[tuple[int | None, int], ...] = ()
    declared_size: int = 0  # MAIL FROM's SIZE= (RFC 1870), 0 when not given


def check_recipient(f: RecipientFacts) -> Verdict:
    if f.accepted_so_far >= f.max_recipients:
        # RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client retries the rest.
        return Defer(TOO_MANY_RECIPIENTS, "limit.recipients")
    if not f.local_domain:
        # Never an open relay: foreign domains only for clients allowed to relay
        # (authenticated users, trusted networks); their mail goes to the queue.
        return ACCEPT if f.may_relay else Reject(RELAY_DENIED, "relay.denied")
    if not f.known:
        return Reject(UNKNOWN_USER, "recipient.unknown")
    if f.quotas:
        size = f.declared_size
        if all(q is not None and size > q for q, _ in f.quotas):
            return Reject(TOO_BIG_FOR_MAILBOX, "recipient.over_quota")
        # One account with room is enough (an alias): the full ones are skipped at delivery.
        if all(q is not None and used + max(size, 1) > q for q, used in f.quotas):
            return Defer(MAILBOX_FULL, "recipient.over_quota")
    return ACCEPT
