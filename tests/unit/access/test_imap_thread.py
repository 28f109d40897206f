"""THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES as tables of messages in,
threads out (the §4 response form)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from mailwright.access.imap.thread import ThreadMessage, ordered_subject, references
from mailwright.message.sortkey import ascii_lower, split_subject
from mailwright.proto.imap import response as r

# (Message-ID or None, Subject, day of January 2023, References, In-Reply-To)
Spec = tuple[str | None, str, int, Sequence[str], str | None]


def m(
    mid: str | None, subject: str, day: int, refs: Sequence[str] = (), irt: str | None = None
) -> Spec:
    return mid, subject, day, refs, irt


def facts(specs: Sequence[Spec]) -> list[ThreadMessage]:
    out = []
    for seq, (mid, subject, day, refs, irt) in enumerate(specs, 1):
        base, reply = split_subject(subject)
        out.append(
            ThreadMessage(
                number=seq,
                seq=seq,
                sent=1672531200.0 + (day - 1) * 86400,
                subject=ascii_lower(base),
                reply=reply,
                message_id=mid,
                # RFC 5256 §3 step 1: References, else the first In-Reply-To.
                parents=tuple(refs) if refs else ((irt,) if irt else ()),
            )
        )
    return out


def wire(threads: list[list[object]]) -> str:
    return r.thread(threads).to_bytes().decode()[len("* THREAD ") :].rstrip("\r\n")  # type: ignore[arg-type]


# Each answer is also what Dovecot 2.3's THREAD=REFERENCES says for the same messages.
CASES: dict[str, tuple[list[Spec], str]] = {
    # Step 1: References and In-Reply-To make the tree; step 4/6: siblings by date.
    "chain": (
        [
            m("a", "plan", 1),
            m("b", "Re: plan", 2, ["a"]),
            m("c", "other", 3),
            m("d", "Re: plan", 4, ["a", "b"]),
            m("e", "Re: plan", 5, irt="a"),
        ],
        "(1 (2 4)(5))(3)",
    ),
    # Step 3: a missing parent of several messages stays, as a dummy, at the root ...
    "dummy-root-two": ([m("b", "Re: x", 2, ["gone"]), m("c", "Re: y", 3, ["gone"])], "((1)(2))"),
    # ... but gives way to its only child; threads ordered by date.
    "dummy-root-one": ([m("b", "Re: x", 2, ["gone"]), m("c", "z", 1)], "(2)(1)"),
    # A missing message inside a thread gives way to its children.
    "dummy-middle": ([m("a", "x", 1), m("c", "Re: x", 3, ["a", "gone"])], "(1 2)"),
    # Step 1: no link that would make a loop; every message is shown once.
    "loop": ([m("a", "p", 1, ["b"]), m("b", "q", 2, ["a"])], "(2 1)"),
    "self-ref": ([m("a", "p", 1, ["a"]), m("b", "q", 2, ["a"])], "(1 2)"),
    # Step 1.A: a duplicate Message-ID belongs to the lowest-numbered message only.
    "dup-id": ([m("a", "p", 1), m("a", "q", 2), m("c", "r", 3, ["a"])], "(1 3)(2)"),
    # Step 1.B: a message's own References replace the parent another message's
    # (truncated) References gave it.
    "relink": (
        [m("m", "s1", 3, ["p", "x"]), m("p", "s2", 1), m("q", "s3", 2), m("x", "s4", 4, ["q"])],
        "(2)(3 4 1)",
    ),
    "no-message-id": ([m(None, "p", 1), m(None, "q", 2, ["none"])], "(1)(2)"),
    # Step 5: threads whose base subjects match are merged. Neither is a reply: both go
    # under a new dummy.
    "subj-two-originals": ([m("a", "lunch", 1), m("b", "lunch", 2)], "((1)(2))"),
    # A reply (no References) goes under the message whose subject it answers ...
    "subj-reply-no-refs": ([m("a", "lunch", 1), m("b", "Re: lunch", 2)], "(1 2)"),
    # ... even an older one: the table holds the message that is not a reply.
    "subj-reply-older": ([m("a", "Re: lunch", 1), m("b", "lunch", 2)], "(2 1)"),
    "subj-two-replies": ([m("a", "Re: lunch", 1), m("b", "Fwd: lunch", 2)], "((1)(2))"),
    # A dummy holds the subject: the other thread becomes a sibling of its children.
    "subj-into-dummy": (
        [
            m("b", "Re: plan", 2, ["gone"]),
            m("c", "Re: plan", 3, ["gone"]),
            m("d", "Re: plan", 1),
        ],
        "((3)(1)(2))",
    ),
    # Two dummies: their children become siblings under one.
    "subj-two-dummies": (
        [
            m("b", "Re: plan", 2, ["gone1"]),
            m("c", "Re: plan", 3, ["gone1"]),
            m("d", "Re: plan", 1, ["gone2"]),
            m("e", "Re: plan", 4, ["gone2"]),
        ],
        "((3)(1)(2)(4))",
    ),
    # An empty base subject merges nothing.
    "subj-empty": ([m("a", "", 1), m("b", "", 2), m("c", "Re:", 3)], "(1)(2)(3)"),
    # A thread's subject is its first message's: a whole thread is merged.
    "subj-thread-root": (
        [m("a", "topic", 1), m("b", "Re: topic", 2, ["a"]), m("c", "topic", 3)],
        "((1 2)(3))",
    ),
    "subj-reply-thread": (
        [m("a", "topic", 2), m("b", "Re: topic", 3, ["a"]), m("c", "Re: topic", 1, ["zz"])],
        "(1 (3)(2))",
    ),
    # Base subjects (RFC 5256 §2.1): case, [blobs], "Re:", "(fwd)".
    "subj-case-blob": (
        [m("a", "[List] Meeting", 1), m("b", "re: [list] meeting", 2), m("c", "MEETING (fwd)", 3)],
        "(1 (2)(3))",
    ),
    "subj-three-originals": (
        [m("a", "news", 3), m("b", "news", 1), m("c", "news", 2), m("d", "Re: news", 4)],
        "((2)(3)(1)(4))",
    ),
    # RFC 5256 §2.2: equal dates fall back to the sequence number.
    "ties": ([m("a", "one", 1), m("b", "two", 1), m("c", "three", 1)], "(1)(2)(3)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_references(name: str) -> None:
    specs, expected = CASES[name]
    assert wire(references(facts(specs))) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_references_ignores_input_order(name: str) -> None:
    specs, expected = CASES[name]
    assert wire(references(list(reversed(facts(specs))))) == expected


def test_uid_thread_shows_numbers_given() -> None:
    got = facts([m("a", "plan", 1), m("b", "Re: plan", 2, ["a"])])
    as_uids = [ThreadMessage(10 * f.seq, f.seq, f.sent, f.subject, f.reply, f.message_id,
                             f.parents) for f in got]  # fmt: skip
    assert wire(references(as_uids)) == "(10 20)"


def test_references_of_nothing() -> None:
    assert references([]) == []


def _numbers(tree: object) -> list[int]:
    if isinstance(tree, int):
        return [tree]
    assert isinstance(tree, list)
    return [n for item in tree for n in _numbers(item)]


def test_every_message_once_whatever_the_headers() -> None:
    # Loops, duplicate ids, self-references, missing parents and subject merges in any
    # mix: each message is in the answer exactly once, and the answer encodes.
    rng = random.Random(5256)
    subjects = ["plan", "Re: plan", "Fwd: plan", "lunch", "Re: lunch", "", "[x] lunch"]
    for _ in range(300):
        n = rng.randint(1, 12)
        ids = [f"m{i}" for i in range(n + 3)]
        specs = [
            m(
                rng.choice(ids) if rng.random() < 0.3 else ids[i],
                rng.choice(subjects),
                rng.randint(1, 4),
                rng.sample(ids, rng.randint(0, 3)),
                rng.choice(ids) if rng.random() < 0.3 else None,
            )
            for i in range(n)
        ]
        threads = references(facts(specs))
        assert sorted(_numbers(threads)) == list(range(1, n + 1)), specs
        wire(threads)


def test_ordered_subject() -> None:
    # RFC 5256 §3 ORDEREDSUBJECT: by base subject, then date; the rest are children of
    # the first; threads by their first message's date.
    specs = [
        m("a", "beta", 3),
        m("b", "Re: alpha", 1),
        m("c", "alpha", 2),
        m("d", "Fwd: beta", 4),
        m("e", "beta", 5),
    ]
    assert wire(ordered_subject(facts(specs))) == "(2 3)(1 (4)(5))"
    assert ordered_subject([]) == []


def test_a_long_chain_needs_no_recursion() -> None:
    # One message's References may name thousands of ids (a chain of dummies), and a
    # thread may be thousands of replies deep: neither may hit Python's recursion limit.
    depth = 5000
    refs = [f"r{i}" for i in range(depth)]
    deep = facts([m("x", "p", 1, refs), m("y", "Re: p", 2, [*refs, "x"])])
    assert wire(references(deep)) == "(1 2)"
    chain = facts(
        [m("m0", "p", 1)] + [m(f"m{i}", "Re: p", 1, [f"m{i - 1}"]) for i in range(1, depth)]
    )
    assert references(chain) == [list(range(1, depth + 1))]
