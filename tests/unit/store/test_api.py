"""The pure helpers of store.api: mailbox names, flags, special use."""

from __future__ import annotations

import pytest

from mailwright.store.api import (
    MAX_NAME_LENGTH,
    mailbox_name,
    merge_flags,
    normalize_flags,
    special_use,
    superiors,
)
from mailwright.store.errors import InvalidName


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("INBOX", "INBOX"),
        ("inbox", "INBOX"),
        ("InBoX/Sub", "INBOX/Sub"),
        ("inboxes", "inboxes"),  # only the whole first level is INBOX
        ("Sub/inbox", "Sub/inbox"),
        ("Work/", "Work"),  # RFC 9051 §6.3.4: a trailing separator is dropped
        ("Entwürfe/日本", "Entwürfe/日本"),
        ("a b", "a b"),
    ],
)
def test_mailbox_name(given: str, stored: str) -> None:
    assert mailbox_name(given) == stored


@pytest.mark.parametrize("bad", ["", "/", "//", "a//b", "/a", "a/b//", "a\nb", "\x00", "x\x7f"])
def test_bad_mailbox_names(bad: str) -> None:
    with pytest.raises(InvalidName):
        mailbox_name(bad)


def test_mailbox_name_length() -> None:
    assert mailbox_name("x" * MAX_NAME_LENGTH) == "x" * MAX_NAME_LENGTH
    with pytest.raises(InvalidName):
        mailbox_name("x" * (MAX_NAME_LENGTH + 1))


def test_superiors() -> None:
    assert superiors("a/b/c") == ["a", "a/b"]
    assert superiors("a") == []


def test_normalize_flags() -> None:
    got = normalize_flags(["\\SEEN", "\\answered", "\\Recent", "\\RECENT", "$label", "$Label"])
    # RFC 3501 §2.3.2: one name in two cases is one flag (the first in code-point order).
    assert got == {"\\Seen", "\\Answered", "$Label"}
    assert normalize_flags(["\\Seen", "\\seen", "Work", "WORK", "work"]) == {"\\Seen", "WORK"}
    assert normalize_flags(["\\Custom"]) == {"\\Custom"}  # unknown system-like: as given
    for bad in ["", "a b", "tab\t", "nul\x00"]:
        with pytest.raises(InvalidName):
            normalize_flags([bad])


@pytest.mark.parametrize(
    ("current", "flags", "mode", "after"),
    [
        # Names compare without regard to case; a message keeps its first spelling.
        ({"$Label1"}, {"$label1"}, "+", {"$Label1"}),
        ({"$Label1", "\\Seen"}, {"$LABEL1"}, "-", {"\\Seen"}),
        ({"$Label1", "\\Seen"}, {"$label1", "Work"}, "=", {"$Label1", "Work"}),
        ({"\\Seen"}, {"\\Flagged", "$Junk"}, "+", {"\\Seen", "\\Flagged", "$Junk"}),
        ({"\\Seen", "$Junk"}, {"\\Seen"}, "-", {"$Junk"}),
        ({"\\Seen"}, set(), "=", set()),
        (set(), {"$x"}, "-", set()),
    ],
)
def test_merge_flags(current: set[str], flags: set[str], mode: str, after: set[str]) -> None:
    assert merge_flags(frozenset(current), frozenset(flags), mode) == after


def test_merge_flags_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        merge_flags(frozenset(), frozenset(), "*")


def test_special_use() -> None:
    assert special_use(None) is None
    assert special_use("\\sent") == "\\Sent"
    assert special_use("\\IMPORTANT") == "\\Important"
    with pytest.raises(InvalidName):
        special_use("\\Spam")
