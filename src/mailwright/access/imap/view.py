"""The selected mailbox as one IMAP session sees it: sequence numbers, flags, and the
changes of other sessions, told at the moments the protocol allows.

Invariants:
- the view is a list of UIDs in ascending order; message sequence number n is the n-th
  (RFC 9051 §2.3.1.2). Sequence numbers change only when this session is told of an
  expunge (an ``Expunge`` or ``Vanished`` update), never behind its back;
- ``known_modseq`` is a MODSEQ up to which every change of the mailbox is in the view.
  It is read before the messages (``open``), so a change committed in between is read
  again by the next ``sync``; applying a change twice is harmless (a flag change equal
  to what the view holds is not reported, a known UID is not added again);
- new messages always have UIDs above every UID in the view (UIDs only grow), so they
  are appended at the end and never renumber anything;
- expunges are held back while ``expunge_allowed`` is False (RFC 9051 §7.5.1: not during
  FETCH, STORE or SEARCH by sequence number, nor with no command in progress); the
  expunged UIDs stay in the view, with their last flags, until they may be told.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailwright.store.api import MailboxInfo, Messages, Placement


@dataclass(frozen=True, slots=True)
class Exists:
    count: int


@dataclass(frozen=True, slots=True)
class Recent:
    count: int


@dataclass(frozen=True, slots=True)
class Expunge:
    seq: int


@dataclass(frozen=True, slots=True)
class Vanished:
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    seq: int
    uid: int
    flags: frozenset[str]
    modseq: int


Update = Exists | Recent | Expunge | Vanished | FlagsChanged


class MailboxView:
    def __init__(
        self,
        info: MailboxInfo,
        placements: Sequence[Placement],
        *,
        read_only: bool,
        recent: tuple[int, int] = (0, 0),
    ) -> None:
        """``recent``: the UIDs first <= uid < end are \\Recent for this session
        (``Mailboxes.claim_recent_range``); messages that arrive later are not."""
        self.info = info
        self.mailbox_id = info.id
        self.read_only = read_only
        self.known_modseq = info.highestmodseq
        self.uids: list[int] = [p.uid for p in placements]
        self.messages: dict[int, Placement] = {p.uid: p for p in placements}
        first, end = recent
        self.recent: set[int] = {p.uid for p in placements if first <= p.uid < end}
        self.expunged: set[int] = set()  # gone from the store, not yet told
        self.dirty = False  # the change feed says the mailbox changed since the last sync
        self._told_recent = len(self.recent)

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def uidnext(self) -> int:
        return max(self.info.uidnext, (self.uids[-1] + 1) if self.uids else 1)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    def max_modseq(self) -> int:
        return max((p.modseq for p in self.messages.values()), default=self.known_modseq)

    # -- changes -----------------------------------------------------------------

    async def sync(
        self, messages: Messages, *, expunge_allowed: bool, qresync: bool
    ) -> list[Update]:
        """Read what changed since ``known_modseq`` and say what the client may be told now."""
        self.dirty = False
        since = self.known_modseq
        changed = await messages.changed_since(self.mailbox_id, since)
        gone = await messages.expunged_since(self.mailbox_id, since)
        return self.apply(changed, gone, expunge_allowed=expunge_allowed, qresync=qresync)

    def apply(
        self,
        changed: Iterable[Placement],
        gone: Iterable[int],
        *,
        expunge_allowed: bool,
        qresync: bool,
    ) -> list[Update]:
        updates: list[Update] = []
        before = len(self.uids)
        top = self.uids[-1] if self.uids else 0
        highest = self.known_modseq
        for p in changed:
            highest = max(highest, p.modseq)
            old = self.messages.get(p.uid)
            if old is None:
                if p.uid > top and p.uid not in self.expunged:
                    self.uids.append(p.uid)
                    top = p.uid
                    self.messages[p.uid] = p
                continue
            self.messages[p.uid] = p
            if old.flags != p.flags and p.uid not in self.expunged:
                seq = self.seq_of(p.uid)
                if seq is not None and seq <= before:
                    updates.append(FlagsChanged(seq, p.uid, p.flags, p.modseq))
        for uid in gone:
            if uid in self.messages:
                self.expunged.add(uid)
        if len(self.uids) != before:
            updates.append(Exists(len(self.uids)))
            if len(self.recent) != self._told_recent:
                self._told_recent = len(self.recent)
                updates.append(Recent(len(self.recent)))
        if expunge_allowed:
            updates.extend(self.take_expunges(qresync=qresync))
        # Expunges still held back are below this MODSEQ too: ``expunged`` keeps them.
        self.known_modseq = highest
        return updates

    def take_expunges(self, *, qresync: bool) -> list[Update]:
        """Tell the held-back expunges (highest sequence number first for EXPUNGE, so each
        number is valid when read; one VANISHED for QRESYNC clients) and renumber."""
        if not self.expunged:
            return []
        doomed = sorted(self.expunged)
        self.expunged.clear()
        updates: list[Update]
        if qresync:
            updates = [Vanished(tuple(doomed))]
        else:
            updates = []
            for uid in reversed(doomed):
                seq = self.seq_of(uid)
                if seq is not None:
                    updates.append(Expunge(seq))
        self.remove(doomed)
        return updates

    def remove(self, uids: Iterable[int]) -> None:
        drop = set(uids)
        self.uids = [u for u in self.uids if u not in drop]
        for uid in drop:
            self.messages.pop(uid, None)
            self.recent.discard(uid)
        self._told_recent = len(self.recent)

    def own_change(self, modseq: int) -> None:
        """This session's own write took ``modseq`` and is already in the view. When it
        is the very next MODSEQ (MODSEQs of a mailbox go up by one per operation),
        nothing else changed in between, so the view is current up to it and the change
        feed's notice of it needs no read of the store."""
        if modseq == self.known_modseq + 1:
            self.known_modseq = modseq

    def set_flags(self, uid: int, flags: frozenset[str], modseq: int) -> None:
        """This session's own STORE, already reported by the command itself."""
        old = self.messages.get(uid)
        if old is not None:
            self.messages[uid] = Placement(
                old.uid, old.message_id, flags, modseq, old.internal_date, old.size
            )
