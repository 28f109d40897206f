"""MailboxView: sequence numbers, the changes of others, and this session's own writes."""

from __future__ import annotations

import asyncio

from mailwright.access.imap.view import (
    Exists,
    Expunge,
    FlagsChanged,
    MailboxView,
    Recent,
    Vanished,
)
from mailwright.store.api import MailboxInfo, Placement

SEEN = frozenset({"\\Seen"})


def placement(uid: int, modseq: int, flags: frozenset[str] = frozenset()) -> Placement:
    return Placement(uid, 100 + uid, flags, modseq, 0, 10)


def view(*uids: int, highest: int = 5) -> MailboxView:
    info = MailboxInfo(1, "INBOX", 7, max(uids, default=0) + 1, highest, None, len(uids), 0)
    return MailboxView(info, [placement(u, 2) for u in uids], read_only=False)


def test_new_flags_and_expunges_at_allowed_moments() -> None:
    v = view(1, 2, 3)
    updates = v.apply(
        [placement(2, 6, frozenset({"\\Seen"})), placement(4, 7)],
        [1],
        expunge_allowed=False,
        qresync=False,
    )
    assert updates == [FlagsChanged(2, 2, frozenset({"\\Seen"}), 6), Exists(4)]
    assert v.uids == [1, 2, 3, 4] and v.known_modseq == 7  # 1 still there: not told yet
    assert v.take_expunges(qresync=False) == [Expunge(1)]
    assert v.uids == [2, 3, 4] and v.seq_of(4) == 3
    # Told again (a re-read of the store): nothing new.
    assert (
        v.apply([placement(2, 6, frozenset({"\\Seen"}))], [1], expunge_allowed=True, qresync=False)
        == []
    )


def test_vanished_for_qresync_clients() -> None:
    v = view(1, 2, 3)
    assert v.apply([], [3, 1], expunge_allowed=True, qresync=True) == [Vanished((1, 3))]
    assert v.uids == [2]


def test_own_change_moves_known_modseq_only_when_nothing_came_between() -> None:
    v = view(1, 2, highest=5)
    v.own_change(6)  # the very next MODSEQ: nothing else changed
    assert v.known_modseq == 6
    v.own_change(8)  # 7 was someone else's: the store must be read
    assert v.known_modseq == 6


# -- \Recent (RFC 3501 §2.3.2) -----------------------------------------------------------


def test_recent_at_open_and_for_arrivals() -> None:
    info = MailboxInfo(1, "INBOX", 7, 4, 5, None, 3, 0)
    v = MailboxView(info, [placement(u, 2) for u in (1, 2, 3)], read_only=False, recent=(2, 4))
    assert v.recent == {2, 3}
    # New messages, of which this session was given UID 5 alone (4 went to another).
    updates = v.apply(
        [placement(4, 6), placement(5, 6)], [], expunge_allowed=True, qresync=False, recent=(5, 6)
    )
    assert updates == [Exists(5), Recent(3)]
    assert v.recent == {2, 3, 5}
    # A flag change only: no RECENT.
    assert v.apply([placement(5, 7, SEEN)], [], expunge_allowed=True, qresync=False) == [
        FlagsChanged(5, 5, SEEN, 7)
    ]
    # Told of an expunge, the message is no longer counted (the client knows).
    assert v.apply([], [3], expunge_allowed=True, qresync=False) == [Expunge(3)]
    assert v.recent == {2, 5}
    # A new message this session was not given: EXISTS alone.
    assert v.apply([placement(6, 8)], [], expunge_allowed=True, qresync=False) == [Exists(5)]


class FakeMessages:
    """What ``MailboxView.sync`` reads: the changes since a MODSEQ."""

    def __init__(self, changed: list[Placement], gone: list[int]) -> None:
        self.changed, self.gone = changed, gone

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[Placement]:
        return [p for p in self.changed if p.modseq > modseq]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        return self.gone


def test_sync_asks_for_recent_up_to_what_it_read() -> None:
    asked: list[int] = []

    async def source(below: int) -> tuple[int, int]:
        asked.append(below)
        return 3, min(below, 5)

    info = MailboxInfo(1, "INBOX", 7, 3, 5, None, 2, 0)
    v = MailboxView(info, [placement(1, 2), placement(2, 2)], read_only=False, recent_source=source)
    messages = FakeMessages([placement(1, 6, SEEN)], [])
    # Nothing new: the store is not asked.
    assert asyncio.run(v.sync(messages, expunge_allowed=True, qresync=False)) == [  # type: ignore[arg-type]
        FlagsChanged(1, 1, SEEN, 6)
    ]
    assert asked == []
    messages = FakeMessages([placement(3, 7), placement(4, 7)], [])
    updates = asyncio.run(v.sync(messages, expunge_allowed=True, qresync=False))  # type: ignore[arg-type]
    assert asked == [5] and updates == [Exists(4), Recent(2)] and v.recent == {3, 4}


def test_keywords_keep_the_mailboxs_spelling() -> None:
    v = view(1, 2)
    v.set_flags(1, frozenset({"$Label1", "\\Seen"}), 6)
    v.apply([placement(2, 7, frozenset({"Project"}))], [], expunge_allowed=True, qresync=False)
    assert v.keywords == {"$label1": "$Label1", "project": "Project"}
    assert v.spell(["$LABEL1", "\\Seen", "new", "NEW", "project"]) == {
        "$Label1",
        "\\Seen",
        "new",
        "Project",
    }


def test_recent_claimed_ahead_is_marked_when_its_messages_are_read() -> None:
    # The session's own APPEND claimed UIDs 3..4 with the message; another session then
    # claimed 5. The next read brings all three; only 3 and 4 are recent here.
    v = view(1, 2)
    v.claimed_ahead((3, 5))
    v.claimed_ahead((6, 6))  # an empty claim is nothing
    updates = v.apply(
        [placement(3, 6), placement(4, 6), placement(5, 7)],
        [],
        expunge_allowed=True,
        qresync=False,
        recent=(5, 5),
    )
    assert updates == [Exists(5), Recent(2)] and v.recent == {3, 4}
    # Marked once: a later read does not mark them again after an expunge.
    assert v.apply([], [3], expunge_allowed=True, qresync=False) == [Expunge(3)]
    assert v.apply([placement(6, 8)], [], expunge_allowed=True, qresync=False) == [Exists(5)]
    assert v.recent == {4}
