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
  expunged UIDs stay in the view, with their last flags, until they may be told;
- \\Recent (RFC 3501 §2.3.2) is the store's to hand out (``Mailboxes.claim_recent_range``,
  atomic across processes), never decided here: the view asks ``recent_source`` for the
  UIDs up to the highest one it has read, after reading them, so a read-write session
  claims exactly the messages it is the first to be told of, when it opens the mailbox
  and whenever new ones arrive. A read-only view's source only looks (EXAMINE takes
  \\Recent from no one, RFC 3501 §6.3.2).
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
# Given one more than the highest UID the view has read, the range (first, end) of UIDs
# that are \Recent for this session (``Mailboxes.claim_recent_range``'s answer).
RecentSource = Callable[[int], Awaitable[tuple[int, int]]]


class MailboxView:
    def __init__(
        self,
        info: MailboxInfo,
        placements: Sequence[Placement],
        *,
        read_only: bool,
        recent: tuple[int, int] = (0, 0),
        recent_source: RecentSource | None = None,
    ) -> None:
        """``recent``: the UIDs first <= uid < end are \\Recent for this session (what
        ``recent_source`` said when the mailbox was opened); ``recent_source`` is asked
        again whenever messages arrive (None: they are never recent)."""
        self.info = info
        self.mailbox_id = info.id
        self.read_only = read_only
        self.known_modseq = info.highestmodseq
        self.uids: list[int] = [p.uid for p in placements]
        self.messages: dict[int, Placement] = {p.uid: p for p in placements}
        self.recent: set[int] = set()
        self.recent_source = recent_source
        # Keyword names (RFC 9051 §2.3.2, case-insensitive) by their lower-case form, as
        # the mailbox spells them: the oldest message's spelling first.
        self.keywords: dict[str, str] = {}
        for p in placements:
            if p.flags:
                self._learn(p.flags)
        # A keyword new to the mailbox since the client was last given FLAGS (RFC 3501
        # §7.2.6): the session sends FLAGS and PERMANENTFLAGS again.
        self.new_keywords = False
        self.expunged: set[int] = set()  # gone from the store, not yet told
        self.dirty = False  # the change feed says the mailbox changed since the last sync
        # \Recent ranges this session claimed before reading their messages (its own
        # APPEND): marked at the next read, which sees every message in them.
        self._claimed_ahead: list[tuple[int, int]] = []
        self.mark_recent(recent)
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

    def _learn(self, flags: frozenset[str]) -> None:
        for f in flags:
            if not f.startswith("\\") and f.lower() not in self.keywords:
                self.keywords[f.lower()] = f
                self.new_keywords = True

    def take_new_keywords(self) -> bool:
        """Whether a keyword appeared since the last call (or the view's making)."""
        new, self.new_keywords = self.new_keywords, False
        return new

    def spell(self, flags: Iterable[str]) -> frozenset[str]:
        """``flags`` with each keyword the mailbox already has in the mailbox's spelling,
        and one name given in several cases once (the first given)."""
        out: dict[str, str] = {}
        for f in flags:
            key = f.lower()
            out.setdefault(key, self.keywords.get(key, f))
        return frozenset(out.values())

    def mark_recent(self, recent: tuple[int, int]) -> None:
        """The UIDs of the view from ``recent[0]`` up to (not including) ``recent[1]``
        are \\Recent for this session."""
        first, end = recent
        lo, hi = bisect.bisect_left(self.uids, first), bisect.bisect_left(self.uids, end)
        self.recent.update(self.uids[lo:hi])

    def claimed_ahead(self, recent: tuple[int, int]) -> None:
        """``recent`` (first, end) was claimed for this session with messages it has not
        read yet; their UIDs are \\Recent here once the next ``sync`` brings them."""
        if recent[0] < recent[1]:
            self._claimed_ahead.append(recent)

    async def sync(
        self, messages: Messages, *, expunge_allowed: bool, qresync: bool
    ) -> list[Update]:
        """Read what changed since ``known_modseq`` and say what the client may be told now."""
        self.dirty = False
        since = self.known_modseq
        changed = await messages.changed_since(self.mailbox_id, since)
        gone = await messages.expunged_since(self.mailbox_id, since)
        recent = (0, 0)
        top = self.uids[-1] if self.uids else 0
        newest = max((p.uid for p in changed if p.uid > top), default=0)
        if newest and self.recent_source is not None:
            # Asked after the read, so the store's UIDNEXT is past every UID read.
            recent = await self.recent_source(newest + 1)
        return self.apply(
            changed, gone, expunge_allowed=expunge_allowed, qresync=qresync, recent=recent
        )

    def apply(
        self,
        changed: Iterable[Placement],
        gone: Iterable[int],
        *,
        expunge_allowed: bool,
        qresync: bool,
        recent: tuple[int, int] = (0, 0),
    ) -> list[Update]:
        """Take in a read of the store; ``recent``: as for ``mark_recent``, the UIDs that
        are \\Recent for this session among those it brings."""
        updates: list[Update] = []
        before = len(self.uids)
        top = self.uids[-1] if self.uids else 0
        highest = self.known_modseq
        for p in changed:
            highest = max(highest, p.modseq)
            if p.flags:
                self._learn(p.flags)
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
        self.mark_recent(recent)
        for ahead in self._claimed_ahead:
            self.mark_recent(ahead)
        self._claimed_ahead.clear()
        if len(self.uids) != before:
            updates.append(Exists(len(self.uids)))
        if len(self.recent) != self._told_recent:
            # RFC 3501 §7.3.2: the client records the new count (it comes with EXISTS).
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
        self._learn(flags)
        if old is not None:
            self.messages[uid] = Placement(
                old.uid, old.message_id, flags, modseq, old.internal_date, old.size
            )
