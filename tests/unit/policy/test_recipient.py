"""check_recipient as a table: facts in, verdict out."""

from __future__ import annotations

import pytest

from mailwright.policy.recipient import (
    MAILBOX_FULL,
    RELAY_DENIED,
    TOO_BIG_FOR_MAILBOX,
    TOO_MANY_RECIPIENTS,
    UNKNOWN_USER,
    RecipientFacts,
    check_recipient,
)
from mailwright.policy.verdict import ACCEPT, Defer, Reject, Verdict

KNOWN = {"local_domain": True, "known": True, "may_relay": False}


def facts(**kw: object) -> RecipientFacts:
    base: dict[str, object] = {**KNOWN, "accepted_so_far": 0, "max_recipients": 10}
    base.update(kw)
    return RecipientFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "verdict"),
    [
        ({}, ACCEPT),
        ({"accepted_so_far": 10}, Defer(TOO_MANY_RECIPIENTS, "limit.recipients")),
        ({"local_domain": False, "known": False}, Reject(RELAY_DENIED, "relay.denied")),
        # Authenticated users and trusted networks relay (to the queue).
        ({"local_domain": False, "known": False, "may_relay": True}, ACCEPT),
        (
            {"local_domain": False, "known": False, "may_relay": True, "accepted_so_far": 10},
            Defer(TOO_MANY_RECIPIENTS, "limit.recipients"),
        ),
        # Relaying does not make an unknown local user known.
        ({"known": False, "may_relay": True}, Reject(UNKNOWN_USER, "recipient.unknown")),
        ({"known": False}, Reject(UNKNOWN_USER, "recipient.unknown")),
        # Quotas: (quota_bytes, used_bytes) per account the recipient reaches.
        ({"quotas": ((None, 10**9),)}, ACCEPT),
        ({"quotas": ((1000, 500),)}, ACCEPT),
        ({"quotas": ((1000, 1000),)}, Defer(MAILBOX_FULL, "recipient.over_quota")),
        (
            {"quotas": ((1000, 500),), "declared_size": 600},
            Defer(MAILBOX_FULL, "recipient.over_quota"),
        ),
        (
            {"quotas": ((1000, 0),), "declared_size": 1001},
            Reject(TOO_BIG_FOR_MAILBOX, "recipient.over_quota"),
        ),
        # An alias: one account with room is enough.
        ({"quotas": ((1000, 1000), (None, 0))}, ACCEPT),
        ({"quotas": ((1000, 1000), (5000, 4000)), "declared_size": 500}, ACCEPT),
    ],
)
def test_check_recipient(kw: dict[str, object], verdict: Verdict) -> None:
    assert check_recipient(facts(**kw)) == verdict
