"""MailboxView: sequence numbers, the changes of others, and this session's own writes."""

from __future__ import annotations

from mailwright.access.imap.view import Exists, Expunge, FlagsChanged, MailboxView, Vanished
from mailwright.store.api import MailboxInfo, Placement


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
