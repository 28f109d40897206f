"""THREAD (RFC 5256 §3): the ORDEREDSUBJECT and REFERENCES algorithms, over the facts
``Searcher`` gathers from each message's cached structure.

Invariants:
- pure functions of their input: no store, no I/O, so the algorithms are tested as
  tables of messages in, threads out;
- every message given appears exactly once in the result, whatever its headers say
  (loops in References, duplicate Message-IDs, a message that names itself);
- "sent date" is RFC 5256 §2.2's: the Date header, else the INTERNALDATE; ties are
  broken by sequence number, so the order never depends on the input's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# A thread as ``response.thread`` takes it: message numbers, then sub-thread lists.
Tree = list[object]


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    number: int  # what the response shows: the sequence number, or the UID (UID THREAD)
    seq: int
    sent: float  # RFC 5256 §2.2 sent date, Unix seconds
    subject: str  # RFC 5256 §2.1 base subject, as compared (i;ascii-casemap folded)
    reply: bool = False  # extracting the base subject removed a reply/forward marker
    message_id: str | None = None  # None: the message has none (step 1 makes one up)
    # The References ids, or without any the first In-Reply-To id (step 1): the last
    # is the parent.
    parents: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[float, int]:
        return self.sent, self.seq


def ordered_subject(messages: Sequence[ThreadMessage]) -> list[Tree]:
    """RFC 5256 §3 ORDEREDSUBJECT: messages grouped by base subject, each group sorted by
    sent date; the first message of a group is the parent of the rest; threads ordered
    by the sent date of their first message."""
    groups: dict[str, list[ThreadMessage]] = {}
    for m in messages:
        groups.setdefault(m.subject, []).append(m)
    threads: list[tuple[tuple[float, int], Tree]] = []
    for members in groups.values():
        members.sort(key=lambda m: m.key)
        first, rest = members[0], members[1:]
        # "(1 2)" for one child, "(1 (2)(3))" for several: all are siblings.
        tree: Tree = [first.number]
        if len(rest) == 1:
            tree.append(rest[0].number)
        else:
            tree.extend([m.number] for m in rest)
        threads.append((first.key, tree))
    threads.sort(key=lambda t: t[0])
    return [t[1] for t in threads]


@dataclass(eq=False, slots=True)
class _Node:
    message: ThreadMessage | None = None  # None: a dummy (a message referred to, not here)
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def first(self) -> ThreadMessage | None:
        """The message that stands for it: its own, or a dummy's first child's."""
        node = self
        while node.message is None and node.children:
            node = node.children[0]
        return node.message

    def key(self) -> tuple[float, int]:
        """Its sent date; a dummy's is its first child's (steps 4 and 6)."""
        first = self.first()
        return first.key if first is not None else (0.0, 0)

    def subject(self) -> str:
        """Step 5.B.i: the thread subject (a dummy's is its first child's)."""
        first = self.first()
        return first.subject if first is not None else ""


def _link(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _unlink(child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _descends(node: _Node, ancestor: _Node) -> bool:
    """Whether ``node`` is ``ancestor`` or below it: making ``node`` the parent of
    ``ancestor`` would close a loop."""
    if not ancestor.children:
        return node is ancestor  # nothing is below it: no walk up a long chain
    n: _Node | None = node
    while n is not None:
        if n is ancestor:
            return True
        n = n.parent
    return False


def references(messages: Sequence[ThreadMessage]) -> list[Tree]:
    """RFC 5256 §3 REFERENCES, steps 1 to 6, then the §4 response form."""
    # (1) Link messages by Message-ID and References (In-Reply-To when there are none).
    table: dict[str, _Node] = {}
    nodes: list[_Node] = []

    def node_for(mid: str) -> _Node:
        node = table.get(mid)
        if node is None:
            node = table[mid] = _Node()
            nodes.append(node)
        return node

    for m in sorted(messages, key=lambda m: m.seq):
        node = table.get(m.message_id) if m.message_id is not None else None
        if node is None or node.message is not None:
            # (1.A) No Message-ID, or one an earlier (lower-numbered) message has: this
            # message gets a unique one of its own, which nothing refers to.
            node = _Node()
            nodes.append(node)
            if m.message_id is not None and m.message_id not in table:
                table[m.message_id] = node
        node.message = m
        # (1.A) Each reference is the parent of the next, unless it already has a
        # parent or the link would make a loop.
        prev: _Node | None = None
        for ref in m.parents:
            ref_node = node_for(ref)
            if prev is not None and ref_node.parent is None and not _descends(prev, ref_node):
                _link(prev, ref_node)
            prev = ref_node
        # (1.B) The last reference is the message's parent, replacing any parent it had
        # (a truncated References of another message), unless that makes a loop; with
        # no references it has none.
        _unlink(node)
        if prev is not None and not _descends(prev, node):
            _link(prev, node)

    # (2) The messages without parents are the children of the root.
    roots = [n for n in nodes if n.parent is None]
    # (3) Prune dummies.
    top: list[_Node] = []
    for root in roots:
        top.extend(_prune(root))
    # (4) Sort the root's children; a dummy sorts by its first child.
    for n in top:
        if n.message is None:
            n.children.sort(key=_Node.key)
    top.sort(key=_Node.key)
    # (5) Merge threads whose base subjects match.
    top = _merge_subjects(top)
    # (6) Sort every set of siblings, the deepest first.
    for n in top:
        _sort(n)
    top.sort(key=_Node.key)
    return [_render(n) for n in top]


def _below(root: _Node) -> list[_Node]:
    """``root`` and every node under it, each before its children. (Loops, not recursion:
    one message's References may make a chain of thousands.)"""
    order: list[_Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    return order


def _prune(root: _Node) -> list[_Node]:
    """Step 3: what a child of the root becomes among the root's children. A dummy
    without children goes; a dummy with children gives way to them, except at the root
    when it has more than one (they stay together under it)."""
    becomes: dict[_Node, list[_Node]] = {}
    for node in reversed(_below(root)):  # children first
        kids = [k for child in node.children for k in becomes[child]]
        node.children = kids
        for k in kids:
            k.parent = node
        if node.message is not None or (node is root and len(kids) > 1):
            becomes[node] = [node]
        else:
            for k in kids:
                k.parent = None  # set again by whoever takes them
            becomes[node] = kids
    return becomes[root]


def _is_reply(node: _Node) -> bool:
    return node.message is not None and node.message.reply


def _replaces(n: _Node, held: _Node) -> bool:
    """Step 5.B.iv: whether ``n`` takes the subject table's place from ``held``."""
    if held.message is None:
        return False
    return n.message is None or (_is_reply(held) and not _is_reply(n))


def _merge_subjects(top: list[_Node]) -> list[_Node]:
    """Step 5: gather the root's children whose thread subjects (base subjects) match;
    returns the root's children after it."""
    # (5.A, 5.B) One thread per subject: a dummy if there is one, else a message that
    # is not a reply or forward if there is one, else the first in step 4's order.
    subjects: dict[str, _Node] = {}
    for n in top:
        subject = n.subject()
        if not subject:
            continue
        held = subjects.get(subject)
        if held is None or _replaces(n, held):
            subjects[subject] = n
    # (5.C) Merge every other thread of a subject into the one held for it. A thread
    # merged goes below another (it gets a parent), or, a dummy, hands over its children.
    gone: set[_Node] = set()
    made: list[_Node] = []
    for n in top:
        subject = n.subject()
        held = subjects.get(subject) if subject else None
        if held is None or held is n or n.parent is not None:
            continue
        if n.message is None:
            # Both are dummies (5.B holds a dummy whenever there is one): the children
            # of both become siblings.
            for k in n.children:
                _link(held, k)
            n.children = []
            gone.add(n)
        elif held.message is None or (_is_reply(n) and not _is_reply(held)):
            # Under the dummy, a sibling of its children; or a reply or forward under
            # the message whose subject it answers.
            _link(held, n)
        else:
            # Neither goes below the other: a new dummy holds both and takes the held
            # one's place (the only case where this step makes a dummy).
            dummy = _Node()
            _link(dummy, held)
            _link(dummy, n)
            subjects[subject] = dummy
            made.append(dummy)
    return [n for n in top if n.parent is None and n not in gone] + made


def _sort(root: _Node) -> None:
    for node in reversed(_below(root)):  # the deepest siblings first
        node.children.sort(key=_Node.key)


def _render(root: _Node) -> Tree:
    """RFC 5256 §4: a chain of only children is one list of numbers; several children
    are sub-thread lists, one each; a dummy shows only its children."""
    tree: Tree = []
    stack: list[tuple[_Node, Tree]] = [(root, tree)]
    while stack:
        node, into = stack.pop()
        while node.message is not None and len(node.children) == 1:
            into.append(node.message.number)
            node = node.children[0]
        if node.message is not None:
            into.append(node.message.number)
        for child in node.children:
            sub: Tree = []
            into.append(sub)
            stack.append((child, sub))
    return tree
