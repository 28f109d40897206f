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
from datetime import UTC, date, datetime
from typing import cast

from mailwright.access.imap.content import Content
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

    # -- THREAD (RFC 5256 §4) -------------------------------------------------------

    async def thread(self, found: Sequence[Candidate], algorithm: str) -> list[Thread]:
        if algorithm == "ORDEREDSUBJECT":
            threads = await self._ordered_subject(found)
        else:
            threads = await self._references(found)
        # Lists of numbers ending in sub-thread lists: what ``response.thread`` takes.
        return cast(list[Thread], threads)

    async def _sent(self, m: Candidate) -> float:
        sent = text.sent_date(await m.content.structure())
        return sent.timestamp() if sent is not None else float(m.placement.internal_date)

    async def _ordered_subject(self, found: Sequence[Candidate]) -> list[list[object]]:
        groups: dict[str, list[tuple[float, int, int]]] = {}
        for m in found:
            subject = sortkey.subject_key(await m.content.structure())
            groups.setdefault(subject, []).append((await self._sent(m), m.seq, self._number(m)))
        threads = []
        for members in groups.values():
            members.sort()
            # RFC 5256 §4: the rest of the thread are children of the first message:
            # "(1 2)" for one, "(1 (2)(3))" for several.
            numbers = [n for _, _, n in members]
            tree: list[object] = [numbers[0]]
            if len(numbers) == 2:
                tree.append(numbers[1])
            else:
                tree.extend([n] for n in numbers[1:])
            threads.append((members[0][0], members[0][1], tree))
        threads.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in threads]

    async def _references(self, found: Sequence[Candidate]) -> list[list[object]]:
        # RFC 5256 §4 REFERENCES, steps 1-5 (without the subject merging of step 5.C,
        # which only joins threads whose roots lost their parents).
        nodes: dict[str, _Node] = {}
        for m in found:
            s = await m.content.structure()
            mid = sortkey.message_id(s) or f"<mailwright-{m.uid}@dummy>"
            node = nodes.get(mid)
            if node is None or node.message is not None:
                if node is not None:  # a duplicate Message-ID: a fresh one (step 1.A)
                    mid = f"<mailwright-dup-{m.uid}@dummy>"
                node = nodes.setdefault(mid, _Node(mid))
            node.message = (await self._sent(m), m.seq, self._number(m))
            parents = sortkey.thread_parents(s)
            prev: _Node | None = None
            for ref in parents:
                ref_node = nodes.setdefault(ref, _Node(ref))
                if prev is not None and ref_node.parent is None and not _descends(prev, ref_node):
                    ref_node.parent = prev
                    prev.children.append(ref_node)
                prev = ref_node
            if prev is not None and prev is not node and not _descends(node, prev):
                if node.parent is not None:
                    node.parent.children.remove(node)
                node.parent = prev
                prev.children.append(node)
        roots = [n for n in nodes.values() if n.parent is None]
        out: list[tuple[float, int, list[object]]] = []
        for root in roots:
            for tree in _prune(root):
                key = _first_date(tree)
                out.append((key[0], key[1], _render(tree)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in out]

    def _number(self, m: Candidate) -> int:
        return m.uid if self.uid_numbers else m.seq


@dataclass(eq=False, slots=True)
class _Node:
    mid: str
    message: tuple[float, int, int] | None = None  # (sent, seq, number to show)
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)


def _descends(node: _Node, ancestor: _Node) -> bool:
    """Whether ``node`` is ``ancestor`` or below it (a link would make a loop)."""
    n: _Node | None = node
    while n is not None:
        if n is ancestor:
            return True
        n = n.parent
    return False


def _prune(node: _Node) -> list[_Node]:
    """RFC 5256 §4 step 4: dummies without children go; a dummy's children take its
    place (at the root only if it has one child)."""
    kids: list[_Node] = []
    for child in node.children:
        kids.extend(_prune(child))
    node.children = kids
    for k in kids:
        k.parent = node
    if node.message is not None:
        return [node]
    if not kids:
        return []
    if node.parent is not None or len(kids) == 1:
        for k in kids:
            k.parent = node.parent
        return kids
    return [node]


def _first_date(node: _Node) -> tuple[float, int]:
    if node.message is not None:
        return node.message[0], node.message[1]
    return min((_first_date(k) for k in node.children), default=(0.0, 0))


def _render(node: _Node) -> list[object]:
    """A thread as the response encoder takes it: numbers, then sub-thread lists."""
    kids = sorted(node.children, key=_first_date)
    head: list[object] = [node.message[2]] if node.message is not None else []
    if len(kids) == 1 and node.message is not None:
        return head + _render(kids[0])
    return head + [_render(k) for k in kids]


def _nth(i: int) -> Callable[[tuple[list[str | int | float], Candidate]], str | int | float]:
    return lambda km: km[0][i]


def _internal_day(p: Placement) -> date:
    # RFC 9051 §6.4.4: dates compare without time or timezone; our internal dates are UTC.
    return datetime.fromtimestamp(p.internal_date, UTC).date()
