"""SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4, CONDSTORE's MODSEQ key), SORT and THREAD
(RFC 5256) over a selected mailbox.

Keys that need only what the view holds (flags, UIDs, sizes, dates, MODSEQ) never touch
the message; header and body keys load the message's cached structure and bytes once
per message and command (``Content``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import cast

from mailwright.access.imap import fetch as fetching
from mailwright.access.imap.content import Content
from mailwright.access.imap.thread import ThreadMessage, ordered_subject, references
from mailwright.access.imap.view import MailboxView
from mailwright.message import search as text
from mailwright.message import sortkey
from mailwright.proto.imap import command as c
from mailwright.proto.imap.response import Thread
from mailwright.store.api import Messages, Placement

# RFC 9051 §6.4.4: the flag keys and the flag each one tests.
_SYSTEM = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
}


@dataclass(slots=True)
class Candidate:
    seq: int
    uid: int
    placement: Placement
    content: Content
    recent: bool

    @property
    def flags_folded(self) -> frozenset[str]:
        return frozenset(f.lower() for f in self.placement.flags)


@dataclass(slots=True)
class Searcher:
    view: MailboxView
    messages: Messages
    saved: list[int] = field(default_factory=list)  # RFC 5182 $, as UIDs
    uid_numbers: bool = False  # THREAD answers with UIDs (UID THREAD)
    saving: set[asyncio.Task[None]] = field(default_factory=set)  # see Content

    def candidates(self) -> list[Candidate]:
        view = self.view
        out = []
        for seq, uid in enumerate(view.uids, 1):
            p = view.messages[uid]
            out.append(
                Candidate(
                    seq,
                    uid,
                    p,
                    Content(self.messages, p.message_id, self.saving),
                    uid in view.recent,
                )
            )
        return out

    async def search(self, key: c.SearchKey) -> list[Candidate]:
        return [cand for cand in self.candidates() if await self.matches(key, cand)]

    async def matches(self, key: c.SearchKey, m: Candidate) -> bool:
        view = self.view
        match key:
            case c.All():
                return True
            case c.And(keys):
                for k in keys:
                    if not await self.matches(k, m):
                        return False
                return True
            case c.Or(keys):
                for k in keys:
                    if await self.matches(k, m):
                        return True
                return False
            case c.Not(inner):
                return not await self.matches(inner, m)
            case c.FlagKey(flag, present):
                name = _SYSTEM.get(flag.upper(), flag)
                return (name.lower() in m.flags_folded) == present
            case c.Keyword(keyword):
                return keyword.lower() in m.flags_folded
            case c.Unkeyword(keyword):
                return keyword.lower() not in m.flags_folded
            case c.New():
                return m.recent and "\\seen" not in m.flags_folded
            case c.Old():
                return not m.recent
            case c.Recent():
                return m.recent
            case c.Larger(size):
                return m.placement.size > size
            case c.Smaller(size):
                return m.placement.size < size
            case c.UidKey(numbers):
                if numbers.saved:
                    return m.uid in self.saved
                top = view.uids[-1] if view.uids else 0
                return numbers.contains(m.uid, top)
            case c.SeqKey(numbers):
                if numbers.saved:
                    return m.uid in self.saved
                return numbers.contains(m.seq, view.exists)
            case c.ModSeqKey(modseq):
                return m.placement.modseq >= modseq
            case c.Before(day):
                return _internal_day(m.placement) < day
            case c.On(day):
                return _internal_day(m.placement) == day
            case c.Since(day):
                return _internal_day(m.placement) >= day
            case c.SentBefore(day) | c.SentOn(day) | c.SentSince(day):
                sent = text.sent_date(await m.content.structure())
                # RFC 9051 §6.4.4: without a usable Date header, the internal date counts.
                sent_day = sent.date() if sent is not None else _internal_day(m.placement)
                if isinstance(key, c.SentBefore):
                    return sent_day < day
                if isinstance(key, c.SentOn):
                    return sent_day == day
                return sent_day >= day
            case c.Header(name, value):
                raw, s = await m.content.raw(), await m.content.structure()
                values = text.header_values(raw, s, name)
                if not value:
                    return bool(values)  # RFC 9051 §6.4.4: "" matches any message with the field
                return any(text.contains(v, value) for v in values)
            case c.Body(needle):
                raw, s = await m.content.raw(), await m.content.structure()
                return text.contains(text.body_text(raw, s), needle)
            case c.Text(needle):
                raw, s = await m.content.raw(), await m.content.structure()
                return text.contains(text.header_text(raw, s), needle) or text.contains(
                    text.body_text(raw, s), needle
                )
        return False  # pragma: no cover - every key class is matched above

    # -- SORT (RFC 5256 §3) ---------------------------------------------------------

    async def sort(
        self, found: Sequence[Candidate], criteria: Sequence[c.SortCriterion]
    ) -> list[Candidate]:
        keyed = []
        for m in found:
            keys = [await self._sort_key(m, crit.key) for crit in criteria]
            keyed.append((keys, m))
        # Stable sorts from the last criterion to the first; ties end in sequence order.
        keyed.sort(key=lambda km: km[1].seq)
        for i in reversed(range(len(criteria))):
            keyed.sort(key=_nth(i), reverse=criteria[i].reverse)
        return [m for _, m in keyed]

    async def _sort_key(self, m: Candidate, key: str) -> str | int | float:
        if key == "ARRIVAL":
            return m.placement.internal_date
        if key == "SIZE":
            return m.placement.size
        s = await m.content.structure()
        if key == "DATE":
            sent = text.sent_date(s)
            # RFC 5256 §3: no valid Date header: the internal date is used.
            return sent.timestamp() if sent is not None else float(m.placement.internal_date)
        if key == "SUBJECT":
            return sortkey.subject_key(s)
        if key in ("FROM", "TO", "CC"):
            return sortkey.first_mailbox(s, key.lower())
        if key in ("DISPLAYFROM", "DISPLAYTO"):
            return sortkey.display_key(s, key[7:].lower())
        return 0  # pragma: no cover - the parser accepts only the keys above

    # -- THREAD (RFC 5256 §3) -------------------------------------------------------

    async def thread(self, found: Sequence[Candidate], algorithm: str) -> list[Thread]:
        facts = [await self._thread_message(m) for m in found]
        algo = ordered_subject if algorithm == "ORDEREDSUBJECT" else references
        threads = algo(facts)
        # Lists of numbers ending in sub-thread lists: what ``response.thread`` takes.
        return cast(list[Thread], threads)

    async def _thread_message(self, m: Candidate) -> ThreadMessage:
        s = await m.content.structure()
        sent = text.sent_date(s)
        base, reply = sortkey.split_subject(s.envelope.subject or "")
        return ThreadMessage(
            number=m.uid if self.uid_numbers else m.seq,
            seq=m.seq,
            # RFC 5256 §2.2: without a usable Date header, the internal date.
            sent=sent.timestamp() if sent is not None else float(m.placement.internal_date),
            subject=sortkey.ascii_lower(base),
            reply=reply,
            message_id=sortkey.message_id(s),
            parents=tuple(sortkey.thread_parents(s)),
        )


def _nth(i: int) -> Callable[[tuple[list[str | int | float], Candidate]], str | int | float]:
    return lambda km: km[0][i]


def _internal_day(p: Placement) -> date:
    # RFC 9051 §6.4.4: dates compare without time or timezone; our internal dates are UTC.
    return fetching.utc(p.internal_date).date()
