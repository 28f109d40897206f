"""SORT and THREAD keys (RFC 5256, RFC 5957) from a message's cached structure.

Every key comes from the envelope and the References header kept in the
:class:`~mailwright.message.structure.Structure`, so sorting a mailbox reads no message bytes.
Keys meant for comparison are ASCII-lower-cased (RFC 5256 §3 compares with i;ascii-casemap);
the work per key is linear in the header's length, whatever it contains.
"""

from __future__ import annotations

import re

from mailwright.message.envelope import Address, decode_words
from mailwright.message.structure import Structure

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_WSP_RUN = re.compile(r"[ \t\r\n]+")
# RFC 5256 §5: subj-blob = "[" *BLOCKCHAR "]" *WSP (WSP is one SP after step 1).
_BLOB = re.compile(r"\[[^\[\]]*\] *")
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_REFWD = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]]*\] *)?:", re.IGNORECASE)
_MSG_ID = re.compile(r"<([^<>]*)>")


def ascii_lower(text: str) -> str:
    return text.translate(_LOWER)


def split_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: the base subject of ``subject``, and whether the extraction removed a
    reply or forward marker (subj-refwd, "(fwd)" or "[fwd: ...]"), which THREAD needs."""
    # (1) decode encoded words; every run of white space becomes one SP.
    s = _WSP_RUN.sub(" ", decode_words(subject))
    reply = False
    p, e = 0, len(s)
    while True:
        # (2) drop trailing "(fwd)" and WSP (subj-trailer), repeatedly.
        while e > p:
            if s[e - 1] == " ":
                e -= 1
            elif e - p >= 5 and ascii_lower(s[e - 5 : e]) == "(fwd)":
                e -= 5
                reply = True
            else:
                break
        # (3)-(5) drop leaders (*subj-blob subj-refwd, or WSP) and leading blobs that leave
        # something behind, until neither applies.
        while p < e:
            q = p
            blob_starts: list[int] = []
            while (m := _BLOB.match(s, q, e)) is not None:
                blob_starts.append(q)
                q = m.end()
            m = _REFWD.match(s, q, e)
            if m is not None:
                p = m.end()
                reply = True
            elif s[p] == " ":
                p += 1
            elif not blob_starts:
                break
            elif q < e:
                p = q  # every blob goes: each leaves a non-empty base (step 4)
            elif len(blob_starts) > 1:
                p = blob_starts[-1]  # all but the last: it alone would leave nothing
            else:
                break
        # (6) "[fwd:" ... "]" wraps the rest: unwrap and go again from (2).
        if e - p >= 6 and ascii_lower(s[p : p + 5]) == "[fwd:" and s[e - 1] == "]":
            p += 5
            e -= 1
            reply = True
            continue
        return s[p:e], reply


def base_subject(subject: str) -> str:
    """RFC 5256 §2.1 base subject (encoded words decoded; case as given)."""
    return split_subject(subject)[0]


def subject_key(structure: Structure) -> str:
    """SORT SUBJECT key: the base subject, ASCII-lower-cased (RFC 5256 §3)."""
    return ascii_lower(base_subject(structure.envelope.subject or ""))


def _first_mailbox(addresses: tuple[Address, ...]) -> Address | None:
    for a in addresses:
        if a.host is not None:
            return a
    return None


def first_mailbox(structure: Structure, field: str = "from") -> str:
    """SORT FROM / TO / CC key (RFC 5256 §3): the addr-mailbox of the first address of
    ``field``, lower-cased; "" when there is none. Group markers are skipped."""
    a = _first_mailbox(structure.envelope.addresses(field))
    return ascii_lower(a.mailbox or "") if a is not None else ""


def display_name(structure: Structure, field: str = "from") -> str:
    """The RFC 5957 §3 display value of the first address of ``field`` (DISPLAYFROM with
    "from", DISPLAYTO with "to"): a group's name; else the decoded display name; else
    ``mailbox@host``; "" when there is no address. Case as given."""
    addresses = structure.envelope.addresses(field)
    if not addresses:
        return ""
    first = addresses[0]
    if first.is_group_start:
        return decode_words(first.mailbox or "")
    if first.name:
        name = decode_words(first.name).strip()
        if name:
            return name
    spec = first.mailbox or ""
    return f"{spec}@{first.host}" if first.host else spec


def display_key(structure: Structure, field: str = "from") -> str:
    """SORT DISPLAYFROM / DISPLAYTO key: :func:`display_name`, ASCII-lower-cased."""
    return ascii_lower(display_name(structure, field))


def msg_ids(text: str | None) -> list[str]:
    """The message ids (without angle brackets, white space removed) in a Message-ID,
    In-Reply-To or References value, in order (RFC 5322 §3.6.4)."""
    if not text:
        return []
    out = []
    for m in _MSG_ID.finditer(text):
        inner = _WSP_RUN.sub("", m.group(1))
        if inner:
            out.append(inner)
    return out


def message_id(structure: Structure) -> str | None:
    """The message's id for THREAD, or None (RFC 5256 §3 REFERENCES step 1: the caller then
    assigns a unique one). A bare id without brackets is accepted."""
    value = structure.envelope.message_id
    ids = msg_ids(value)
    if ids:
        return ids[0]
    if value and " " not in value.strip():
        return value.strip()
    return None


def in_reply_to(structure: Structure) -> list[str]:
    return msg_ids(structure.envelope.in_reply_to)


def references(structure: Structure) -> list[str]:
    return msg_ids(structure.references)


def thread_parents(structure: Structure) -> list[str]:
    """RFC 5256 §3 REFERENCES step 1(B): the References ids, or when there are none, the first
    In-Reply-To id (the last element is the parent)."""
    refs = references(structure)
    if refs:
        return refs
    return in_reply_to(structure)[:1]
