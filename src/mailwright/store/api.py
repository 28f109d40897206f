"""The storage interface every protocol talks to. Backends: ``sqlite`` (now), PostgreSQL (later).

Model (the same logical tables on every backend):
- a *message* is stored once (its bytes are a blob) however many mailboxes hold it;
  copies share it (a reference count); its parsed structure is cached beside it;
- a *placement* puts a message in a mailbox under a UID with flags and a MODSEQ;
- UIDs are per mailbox, strictly increasing, never reused (``uidnext`` only grows);
  UIDVALIDITY is fixed when the mailbox is created, kept by a rename, and never handed
  out twice, so a name deleted and created again gets a new one (RFC 9051 §2.3.1.1);
- every change to a mailbox (delivery, append, copy in, flag change, expunge, move out)
  takes the next MODSEQ of that mailbox, one per operation, given to every placement it
  changed; an operation that changes nothing takes none. Expunged UIDs are kept with
  their MODSEQ, so "what changed since MODSEQ n" (RFC 7162 CONDSTORE/QRESYNC) is a
  query (``changed_since`` + ``expunged_since``), and that query is the change log;
- delivery and append are two-phase: the blob is made durable first, then one
  transaction inserts every placement; a crash between the two leaves only an
  unreferenced blob. A method returns only once its transaction is durable;
- ``Account.used_bytes`` is the sum of the sizes of every placement of the account (a
  message in two mailboxes counts twice, as RFC 9208 STORAGE does); every operation
  keeps it exact. An operation that would raise it above ``quota_bytes`` fails with
  ``QuotaExceeded`` and changes nothing; one that does not raise it (a move within the
  account, an expunge) never fails for quota, so an account over quota can clean up;
- mailbox names: hierarchy separator ``/``, stored as given (UTF-8; the protocol layer
  converts modified UTF-7), except that ``INBOX`` is case-insensitive everywhere and
  stored as "INBOX" (also as the first level of a longer name: "inbox/x" is "INBOX/x").
  Every superior of a mailbox exists (create and rename make missing ones), so there is
  no \\Noselect state; a mailbox with inferiors cannot be deleted (``HasChildren``);
- after each commit the change is published on the change feed, to sessions of every
  process sharing the installation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from mailwright.store.errors import InvalidName

INBOX = "INBOX"
SEPARATOR = "/"  # the hierarchy separator of every account's mailbox names
MAX_NAME_LENGTH = 1000  # characters; deep or long names only cost, they serve no one
# RFC 6154 special-use mailboxes every new account gets (and has subscribed).
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
# RFC 6154 §2 and RFC 8457 §3 special-use attributes. The store only records the
# attribute: a mailbox marked \All or \Flagged holds what is put in it, it is not a view.
SPECIAL_USES = (
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Important",
    "\\Junk",
    "\\Sent",
    "\\Trash",
)
# RFC 9051 §2.3.2 system flags, in their canonical spelling. \Recent (IMAP4rev1) is not
# stored: it belongs to a session (see ``Mailboxes.claim_recent``).
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"
SEEN = "\\Seen"
DELETED = "\\Deleted"
_CANONICAL_FLAGS = {f.lower(): f for f in (*SYSTEM_FLAGS, RECENT)}
_CANONICAL_USES = {u.lower(): u for u in SPECIAL_USES}


def mailbox_name(name: str) -> str:
    """The stored form of a mailbox name: INBOX (any case, also as the first level of a
    longer name) becomes "INBOX"; anything else is kept as given. Raises ``InvalidName``
    for an empty name, an empty level ("a//b", "/a"), control characters, or a name longer
    than ``MAX_NAME_LENGTH``. One trailing separator is dropped (RFC 9051 §6.3.4: "CREATE
    foo/" declares that names will be made under foo, and creates "foo")."""
    if name.endswith(SEPARATOR):
        name = name[:-1]
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"a mailbox name must have 1 to {MAX_NAME_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise InvalidName("a mailbox name cannot contain control characters")
    levels = name.split(SEPARATOR)
    if "" in levels:
        raise InvalidName(f"a mailbox name cannot have an empty level ({SEPARATOR!r} twice)")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return SEPARATOR.join(levels)


def superiors(name: str) -> list[str]:
    """The superior names of a (stored-form) name, top first: "a/b/c" → ["a", "a/b"]."""
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


def special_use(value: str | None) -> str | None:
    """The canonical spelling of an RFC 6154 attribute; ``InvalidName`` for any other."""
    if value is None:
        return None
    canonical = _CANONICAL_USES.get(value.lower())
    if canonical is None:
        raise InvalidName(f"unsupported special-use attribute {value}")
    return canonical


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in their canonical spelling, whatever the case given (RFC 9051 §9:
    the grammar's literal strings are case-insensitive); \\Recent dropped (a session's,
    never stored). Flag names are case-insensitive (RFC 3501 §2.3.2, RFC 9051 §2.3.2), so
    one name given in several cases counts once: a keyword keeps the spelling it is
    given with, and of several spellings of one name the first in code-point order
    ("$Label" before "$label"). ``InvalidName`` for an empty flag or one with space or
    control characters (the protocol's atom rules refuse them first)."""
    out: dict[str, str] = {}
    for flag in flags:
        if not flag or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in flag):
            raise InvalidName(f"bad flag {flag!r}")
        canonical = _CANONICAL_FLAGS.get(flag.lower(), flag) if flag[0] == "\\" else flag
        if canonical == RECENT:
            continue
        key = canonical.lower()
        if key not in out or canonical < out[key]:
            out[key] = canonical
    return frozenset(out.values())


def merge_flags(current: frozenset[str], flags: frozenset[str], mode: str) -> frozenset[str]:
    """A message's flags after STORE: set (``mode`` "="), add ("+") or remove ("-")
    ``flags`` (normalised) on ``current``. Names compare case-insensitively and a message
    keeps the spelling a keyword was first stored with (as Dovecot does): adding
    "$label1" to a message with "$Label1" changes nothing, removing "$label1" removes
    "$Label1", and "=" keeps the message's spelling of the keywords it keeps."""
    have = {f.lower(): f for f in current}
    if mode == "+":
        return current | frozenset(f for f in flags if f.lower() not in have)
    drop = {f.lower() for f in flags}
    if mode == "-":
        return frozenset(f for f in current if f.lower() not in drop)
    if mode == "=":
        return frozenset(have.get(f.lower(), f) for f in flags)
    raise ValueError(f"bad flag mode {mode!r}")


@dataclass(frozen=True, slots=True)
class Domain:
    name: str


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    password_hash: str
    quota_bytes: int | None  # None: no limit
    used_bytes: int  # see the module docstring: the sum of its placements' sizes


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "local@domain" or "@domain" (catch-all)
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecipientLookup:
    """What one address means locally. ``local_domain`` False: not ours at all."""

    local_domain: bool
    account: Account | None = None
    alias_targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """What SELECT and STATUS need, each a counter kept up to date (no scan)."""

    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    messages: int
    size: int  # sum of the sizes of its messages (RFC 8438 STATUS SIZE)
    unseen: int = 0  # messages without \Seen
    deleted: int = 0  # messages with \Deleted (RFC 9051 STATUS DELETED)
    recent: int = 0  # messages no session has claimed as \Recent yet (IMAP4rev1)
    recent_uid: int = 1  # the first UID not yet claimed as \Recent


@dataclass(frozen=True, slots=True)
class Placement:
    uid: int
    message_id: int
    flags: frozenset[str]
    modseq: int
    internal_date: int  # Unix seconds
    size: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """One placement made by ``deliver`` or ``append``."""

    account_id: int
    mailbox: str
    uid: int
    modseq: int
    # ``append(claim_recent=True)``: the \\Recent range claimed with it, as
    # ``claim_recent_range(mailbox, uid + 1)`` answers.
    recent: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery goes: an account's mailbox (INBOX unless filed elsewhere)."""

    account_id: int
    mailbox: str = INBOX


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What ``deliver`` did: one ``Delivered`` per placement made, in target order, the
    targets whose account had no room (each skipped alone; the others got the mail), and
    how many remote recipients were queued."""

    delivered: list[Delivered]
    over_quota: list[Target] = field(default_factory=list)
    queued: int = 0
    message_id: int = 0  # the stored message (``read_message``); 0 when nothing was stored


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    """A remote recipient, with its RFC 3461 parameters."""

    address: str
    notify: tuple[str, ...] = ()  # NOTIFY as given, upper case; empty: not given
    orcpt: str | None = None  # ORCPT, xtext-decoded: "rfc822;user@example.org"


@dataclass(frozen=True, slots=True)
class Outbound:
    """The remote recipients of a message, queued by ``deliver`` in the same transaction
    as its local placements."""

    sender: str  # the envelope sender; "" for the null reverse-path
    recipients: tuple[OutboundRecipient, ...]
    envid: str | None = None  # RFC 3461 ENVID, decoded
    ret: Literal["FULL", "HDRS"] | None = None  # RFC 3461 RET
    smtputf8: bool = False
    eight_bit: bool = False  # came with BODY=8BITMIME
    # Header fields sent before the stored bytes when relayed (a DKIM-Signature: local
    # copies do not carry it).
    prefix: bytes = b""


@dataclass(frozen=True, slots=True)
class MailEvent:
    """One step in a message's life (RFC-free vocabulary, the HTTP API's too): "received",
    "queued", "delivered" (locally or remotely), "deferred", "bounced", "expired",
    "delayed" (a delay warning went out), "deleted" (by an operator)."""

    queue_id: str
    type: str
    recipient: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)  # host, reply, reason ...
    message_id: str = ""  # the Message-ID header field's value, when known
    time: float = 0.0  # Unix seconds; 0: when the store records it
    id: int = 0  # set by the store: the order of events


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One remote recipient of one queued message."""

    id: int
    queue_id: str
    message_id: int  # the stored message (``read_message``, ``message_source``)
    sender: str
    recipient: str
    domain: str  # the recipient's domain in lower case: where it goes
    notify: tuple[str, ...]
    orcpt: str | None
    envid: str | None
    ret: Literal["FULL", "HDRS"] | None
    smtputf8: bool
    eight_bit: bool
    prefix: bytes
    size: int  # of the stored message (without ``prefix``)
    received_at: int  # Unix seconds
    next_attempt: int
    attempts: int
    last_reply: str
    delay_notified: bool


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    """What became of a claimed entry. "delivered", "failed" and "deleted" remove it;
    "deferred" keeps it for ``next_attempt`` with ``reply`` as the reason."""

    entry_id: int
    outcome: Literal["delivered", "deferred", "failed", "deleted"]
    next_attempt: int = 0
    reply: str = ""
    delay_notified: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An HTTP API key. Only a hash of its secret is stored; ``prefix`` (its first
    characters) tells keys apart in listings."""

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]  # "send", "read", "manage"
    sender_domain: str | None  # None: may send from any local domain
    created_at: float
    revoked: bool = False
    daily_quota: int | None = None  # recipients per UTC day; None: no limit
    rate_limit: int | None = None  # messages per second; None: no limit


@dataclass(frozen=True, slots=True)
class ApiSend:
    """A message sent through the HTTP API, recorded in the transaction that stores it."""

    key_id: int
    sender_domain: str  # of the From address, in lower case: which keys may see it
    idempotency_key: str | None = None
    fingerprint: str = ""  # of the request, to tell a retry from a reuse of the key
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    recipients: int = 0  # how many it was addressed to (what a daily quota counts)
    queue_id: str = ""  # set by the store when read back
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ApiTemplate:
    """A message template of the HTTP API (Jinja2 source of each part)."""

    id: str
    name: str
    subject: str
    text: str | None
    html: str | None
    sender_domain: str | None  # the restriction of the key that made it; None: any
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address the API does not send to: it bounced hard, unsubscribed, or was added."""

    address: str  # lower case
    reason: Literal["bounce", "unsubscribe", "manual"]
    detail: str = ""
    queue_id: str = ""  # the message that put it there, if any
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ScheduledSend:
    """An HTTP API send held until ``due``: the request, to be sent then as ``queue_id``."""

    queue_id: str
    key_id: int
    sender_domain: str
    due: float  # Unix seconds
    request: str  # the message request, JSON
    idempotency_key: str | None = None
    fingerprint: str = ""
    created_at: float = 0.0
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events of API sends to list: every filter given must hold. Pages follow the
    event ids: ``after`` is the last id of the previous page."""

    queue_id: str | None = None
    recipient: str | None = None
    types: tuple[str, ...] = ()
    tag: str | None = None
    since: float | None = None
    until: float | None = None
    sender_domain: str | None = None  # only sends from this domain (a restricted key)
    after: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class FlagResult:
    """What ``store_flags`` did, each list in ascending UID order.

    ``changed``: (uid, new flags, new MODSEQ) of every message whose flags changed, all
    with ``modseq``. ``unchanged``: (uid, flags, MODSEQ) of the messages that were already
    so (nothing written; a STORE without .SILENT reports their flags too). ``failed``: the
    UIDs left alone because their MODSEQ was above UNCHANGEDSINCE (RFC 7162 §3.1.3: the
    MODIFIED response code). UIDs that do not exist are in none of them. ``modseq``: the
    mailbox's HIGHESTMODSEQ after the operation (unchanged when nothing changed)."""

    changed: list[tuple[int, frozenset[str], int]]
    failed: list[int]
    modseq: int
    unchanged: list[tuple[int, frozenset[str], int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Change:
    """Published on the change feed after a commit.

    ``kind``: "append" (new UIDs, also a copy or move in), "flags", "expunge" (also a
    move out), "create", "delete" and "rename" (of ``mailbox_id``; ``uids`` empty), or
    "resync" (changes were lost: re-read everything of the account; ``mailbox_id`` 0).
    A change carried from another process may have empty ``uids`` when the list was too
    long to carry: treat it as "something changed in ``mailbox_id`` up to ``modseq``".
    The feed wakes sessions up; what changed is always read from the store."""

    account_id: int
    mailbox_id: int
    modseq: int
    kind: str
    uids: tuple[int, ...]


class BlobWriter(Protocol):
    """A message's bytes on their way to storage. Memory use is bounded by the backend."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


class Accounts(Protocol):
    async def add_domain(self, name: str) -> None: ...
    async def remove_domain(self, name: str) -> None: ...
    async def list_domains(self) -> list[Domain]: ...
    async def add_account(self, address: str, password_hash: str) -> Account:
        """Also creates ``DEFAULT_MAILBOXES`` and subscribes them."""
        ...

    async def set_password(self, address: str, password_hash: str) -> None: ...
    async def set_quota(self, address: str, quota_bytes: int | None) -> None:
        """RFC 9208 STORAGE limit in bytes (None: none). Lowering it below ``used_bytes``
        is allowed: nothing is removed, but nothing more can be added."""
        ...

    async def remove_account(self, address: str) -> None: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def add_alias(self, source: str, targets: Sequence[str]) -> None: ...
    async def remove_alias(self, source: str, target: str | None = None) -> None: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def lookup_recipient(self, key: str, base_key: str | None) -> RecipientLookup: ...


class Mailboxes(Protocol):
    """Every name argument goes through ``mailbox_name`` (INBOX in any case; bad names
    raise ``InvalidName``)."""

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        """INBOX first, then by name."""
        ...

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo:
        """``NotFound`` if there is none."""
        ...

    async def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        """By id: stays valid across a rename (the selected mailbox of a session)."""
        ...

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo:
        """RFC 9051 §6.3.4: creates missing superiors too (plain mailboxes); the new
        mailbox gets a UIDVALIDITY never handed out before. ``AlreadyExists`` if the name
        exists; ``InvalidName`` for a bad name or special-use attribute. Publishes
        "create" for each mailbox made."""
        ...

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """RFC 9051 §6.3.5: removes the mailbox and its messages (each message's bytes go
        with its last placement; ``used_bytes`` drops by the mailbox's size). Refuses
        INBOX (``NotPermitted``) and a mailbox with inferiors (``HasChildren``: this store
        does not keep \\Noselect containers; delete the inferiors first). Subscriptions are
        left alone (RFC 9051 §6.3.7: a server must not remove one unilaterally). Its UIDs
        are never reused: a mailbox created later with the same name has a new
        UIDVALIDITY. Publishes "delete"."""
        ...

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """RFC 9051 §6.3.6: renames ``old`` and its inferiors (old/x → new/x), creating
        missing superiors of ``new``; each keeps its id, UIDs, UIDVALIDITY and MODSEQs
        (the UIDs still name the same messages, and a mailbox created later under the old
        name gets a new UIDVALIDITY, which is what §6.3.6 asks). ``NotFound`` if ``old``
        does not exist, ``AlreadyExists`` if ``new`` (or a renamed inferior's new name)
        does, ``NotPermitted`` for a rename to INBOX or to a name under ``old`` itself.

        Renaming INBOX moves every message of INBOX into a new mailbox ``new`` (a new
        UIDVALIDITY, UIDs from 1 in the old UID order, flags kept) and leaves INBOX empty,
        its UIDVALIDITY and UIDNEXT unchanged; INBOX's inferiors stay where they are.
        Subscriptions are not changed. Publishes "rename" (or, for INBOX, "create" and
        "append" for the new mailbox and "expunge" for INBOX)."""
        ...

    async def subscribe(self, account_id: int, name: str) -> None:
        """RFC 9051 §6.3.7. The mailbox need not exist; subscribing twice is harmless."""
        ...

    async def unsubscribe(self, account_id: int, name: str) -> None:
        """RFC 9051 §6.3.8. ``NotFound`` if the name is not subscribed."""
        ...

    async def list_subscriptions(self, account_id: int) -> list[str]:
        """Subscribed names, INBOX first, then by name; some may name no mailbox."""
        ...

    async def claim_recent(self, mailbox_id: int) -> int:
        """IMAP4rev1 \\Recent: atomically returns the first UID that is recent for the
        calling session and marks every UID below the mailbox's UIDNEXT as no longer recent
        for later sessions. The caller's recent messages are those with UIDs from the
        returned value up to (not including) UIDNEXT at the time of the call; use
        ``claim_recent_range`` to learn that bound exactly. Cheap: no write when there is
        nothing to claim."""
        ...

    async def claim_recent_range(
        self, mailbox_id: int, below: int | None = None
    ) -> tuple[int, int]:
        """``claim_recent`` returning (first, end): UIDs first <= uid < end are recent for
        the caller alone (empty when first == end), across every process sharing the
        installation. With ``below``, only UIDs under it are claimed (``end`` <= ``below``)
        and later ones stay for whoever sees them first: a session passes one more than
        the highest UID it has read, so it never claims a message it has not been told
        of. A session may claim again later to take the messages that arrived meanwhile
        (RFC 3501 §2.3.2: a message delivered while a session has the mailbox selected is
        recent in that session, if it is the first to be notified of it)."""
        ...


class Messages(Protocol):
    def new_blob(self) -> BlobWriter: ...
    async def deliver(
        self,
        blob: BlobWriter,
        queue_id: str,
        received_at: int,
        targets: Sequence[Target],
        *,
        outbound: Outbound | None = None,
        events: Sequence[MailEvent] = (),
        send: ApiSend | None = None,
    ) -> DeliveryResult:
        """Store the message once, place it in every target and queue its remote
        recipients (``outbound``), with ``events`` and the API's record of it (``send``;
        ``DuplicateRequest`` if its Idempotency-Key was used), in one transaction. A target whose
        account is over quota is skipped and listed in ``over_quota``; ``QuotaExceeded``
        (nothing stored) when that leaves no target and nothing to queue. A missing
        account or mailbox fails the whole delivery (``NotFound``)."""
        ...

    async def append(
        self,
        account_id: int,
        mailbox_id: int,
        blob: BlobWriter,
        flags: frozenset[str],
        internal_date: int,
        *,
        structure: bytes | None = None,
        claim_recent: bool = False,
    ) -> Delivered:
        """RFC 9051 §6.3.12: one new message in one mailbox of ``account_id`` with
        ``flags`` (normalised as ``normalize_flags`` does) and ``internal_date`` (Unix
        seconds). Durable when it returns (as ``deliver``); ``QuotaExceeded`` if it does
        not fit, ``NotFound`` if the mailbox is not the account's. Publishes "append".

        In the same transaction: ``structure`` is stored as ``save_structure`` would, and
        with ``claim_recent`` (a session appending to the mailbox it has selected) the
        \\Recent range up to the new message is claimed (``Delivered.recent``)."""
        ...

    async def copy(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        """RFC 9051 §6.4.7 with RFC 4315 UIDPLUS: copies the messages ``uids`` of the
        source that still exist (others are skipped) into the destination, in ascending
        UID order; returns (source UID, new destination UID) pairs in that order. Flags
        and internal dates are copied; the bytes are not (the message is shared). All or
        nothing: ``QuotaExceeded`` if the destination account has no room for all.
        Publishes "append" for the destination (nothing when nothing was copied)."""
        ...

    async def move(
        self, src_mailbox_id: int, uids: Sequence[int], dst_mailbox_id: int
    ) -> list[tuple[int, int]]:
        """RFC 6851: ``copy`` and an expunge of the moved source UIDs in one transaction
        (after a crash either both happened or neither). Within one account a move does
        not change ``used_bytes`` and never fails for quota. Publishes "append" for the
        destination and "expunge" for the source."""
        ...

    async def list_placements(self, mailbox_id: int) -> list[Placement]:
        """Every placement, by UID. Fast for 100k messages (one index-ordered scan)."""
        ...

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[Placement]:
        """RFC 7162: placements whose MODSEQ is above ``modseq`` (new or re-flagged), by UID."""
        ...

    async def read_message(self, message_id: int) -> bytes: ...
    async def read_message_range(self, message_id: int, start: int, end: int) -> bytes:
        """Octets ``start`` up to (not including) ``end`` of the message, without reading
        the rest (BODY[]<partial> and sections of big messages); clipped to the message's
        size, so ``end`` past the end is fine and ``start`` past it gives b""."""
        ...

    async def read_structure(self, message_id: int) -> bytes | None:
        """The cached parsed structure (opaque bytes), None if not saved yet.
        ``NotFound`` if the message is gone."""
        ...

    async def save_structure(self, message_id: int, data: bytes) -> None:
        """Cache the parsed structure. Not a change of any mailbox: no MODSEQ, no
        publication. ``NotFound`` if the message is gone (a session may ignore it)."""
        ...

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> FlagResult:
        """Set (``mode`` "="), add ("+") or remove ("-") ``flags`` (normalised as
        ``normalize_flags`` does) on the messages ``uids``, names compared without regard
        to case (``merge_flags``). Only messages whose flags
        change get the new MODSEQ (one for the whole operation); when none does, no MODSEQ
        is taken. With ``unchangedsince`` (RFC 7162 §3.1.3), a message whose MODSEQ is above
        it is left alone and listed in ``failed``. ``NotFound`` if the mailbox is gone.
        Publishes "flags" with the changed UIDs. Durable against a crash of the server
        when it returns; a backend may leave the fsync to the next write that needs one
        (a power cut may lose the last flag changes, never a message)."""
        ...

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> int:
        """Removes the placements ``uids`` (missing ones ignored), records them for
        ``expunged_since``, returns the new HIGHESTMODSEQ. Publishes "expunge"."""
        ...

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        """RFC 7162 QRESYNC: UIDs expunged (or moved out) at a MODSEQ above ``modseq``."""
        ...


class Queue(Protocol):
    """The outbound queue: remote recipients waiting for delivery, and the event log.

    An entry is claimed (leased) by one runner at a time, across processes; a lease that
    is not settled by ``update`` (the runner died) expires and the entry is due again (at
    once after a restart: a backend's crash recovery lifts every lease), so a crash
    delivers at least once and never loses an entry. An entry holds a reference
    to its message: the bytes go with the last placement or entry."""

    async def claim(self, now: int, limit: int, lease: int) -> list[QueueEntry]:
        """Up to ``limit`` entries due at ``now`` (``next_attempt`` <= now, no live
        lease), oldest first, leased until now + ``lease``."""
        ...

    async def next_due(self) -> int | None:
        """The earliest ``next_attempt`` of any entry not leased; None: queue empty."""
        ...

    async def queue_stats(self) -> tuple[int, int | None]:
        """(entries, the earliest ``received_at`` of any; None: queue empty), for metrics."""
        ...

    async def update(
        self, updates: Sequence[QueueUpdate], events: Sequence[MailEvent] = ()
    ) -> None:
        """Settle claimed entries and record ``events``, in one transaction."""
        ...

    async def list_queue(self, queue_id: str | None = None) -> list[QueueEntry]:
        """Every entry (of one message), oldest first."""
        ...

    async def retry(self, queue_id: str | None, now: int) -> int:
        """Make the entries (of one message; None: all) due at ``now``, lifting any lease.
        Returns how many."""
        ...

    async def delete(self, queue_id: str) -> int:
        """Drop every entry of a message (an operator's decision: no bounce), recording a
        "deleted" event for each. Returns how many."""
        ...

    async def add_events(self, events: Sequence[MailEvent]) -> None: ...

    async def events(self, key: str) -> list[MailEvent]:
        """Every event of a message, by queue id or Message-ID (with or without <>), in
        order. A Message-ID may name several messages: all of them."""
        ...

    async def message_source(self, message_id: int) -> bytes | Path:
        """The message's bytes (small, stored inline) or the path of its file, to stream.
        ``NotFound`` if it is gone."""
        ...


class Api(Protocol):
    """What the HTTP sending API keeps: keys, the record of each send, event queries.

    Invariants: a send's record (``ApiSend``) is written by ``Messages.deliver`` in the
    same transaction as its message, so a message the API reported exists, and an
    Idempotency-Key names at most one message per key (a second ``deliver`` with the same
    one fails with ``DuplicateRequest`` and stores nothing). A "bounced" event of an API
    send's recipient puts the address on the suppression list in the transaction that
    records it, unless the bounce was a full local mailbox."""

    async def create_key(
        self,
        name: str,
        prefix: str,
        secret_hash: bytes,
        scopes: frozenset[str],
        sender_domain: str | None,
        *,
        daily_quota: int | None = None,
        rate_limit: int | None = None,
    ) -> ApiKey: ...

    async def set_key_limits(
        self, key_id: int, daily_quota: int | None, rate_limit: int | None
    ) -> ApiKey:
        """``NotFound`` if there is no such key."""
        ...

    async def usage(self, key_id: int, since: float) -> tuple[int, int]:
        """(messages, recipients) the key sent since ``since`` (Unix seconds)."""
        ...

    async def key_by_hash(self, secret_hash: bytes) -> ApiKey | None:
        """The key with this secret hash, revoked or not; None if there is none."""
        ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: int) -> None:
        """``NotFound`` if there is no such key."""
        ...

    async def find_send(self, key_id: int, idempotency_key: str) -> ApiSend | None: ...

    async def get_send(self, queue_id: str) -> ApiSend | None: ...

    async def save_template(self, template: ApiTemplate) -> ApiTemplate:
        """Create or replace the template of that id (``created_at`` of a replaced one
        is kept); returns it as stored."""
        ...

    async def get_template(self, template_id: str) -> ApiTemplate | None: ...

    async def list_templates(self, sender_domain: str | None = None) -> list[ApiTemplate]:
        """Every template (None), or those of one domain's keys."""
        ...

    async def delete_template(self, template_id: str) -> None:
        """``NotFound`` if there is no such template."""
        ...

    async def record_send(self, queue_id: str, send: ApiSend, events: Sequence[MailEvent]) -> None:
        """The API's record and events of a send that stored no message (every recipient
        was suppressed); ``DuplicateRequest`` as for ``deliver``."""
        ...

    async def suppress(
        self, entries: Sequence[Suppression], events: Sequence[MailEvent] = ()
    ) -> None:
        """Add (or replace) entries, with ``events``, in one transaction."""
        ...

    async def unsuppress(self, address: str) -> None:
        """``NotFound`` if the address is not on the list."""
        ...

    async def suppressed(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        """Those of ``addresses`` on the list, by their lower-case form."""
        ...

    async def list_suppressions(self, after: str = "", limit: int = 100) -> list[Suppression]:
        """The list by address, a page at a time (``after``: the previous page's last)."""
        ...

    async def secret(self, name: str) -> bytes:
        """A random 32-byte secret of this installation, made the first time it is asked."""
        ...

    async def get_key(self, key_id: int) -> ApiKey | None: ...

    async def schedule_send(self, entry: ScheduledSend) -> None:
        """Hold a send until its time; ``DuplicateRequest`` if its Idempotency-Key was used
        for another scheduled send of the key."""
        ...

    async def get_scheduled(self, queue_id: str) -> ScheduledSend | None: ...

    async def find_scheduled(self, key_id: int, idempotency_key: str) -> ScheduledSend | None: ...

    async def next_scheduled(self) -> float | None:
        """The earliest ``due`` of a held send (leased or not); None: none held. A read,
        so that looking for due work writes nothing."""
        ...

    async def claim_scheduled(self, now: float, limit: int, lease: float) -> list[ScheduledSend]:
        """Up to ``limit`` held sends due at ``now`` and not leased, leased until
        now + ``lease`` (across processes: a claim that is not settled lapses)."""
        ...

    async def settle_scheduled(
        self, queue_id: str, *, retry_at: float | None = None, error: str = ""
    ) -> None:
        """Done with a held send: gone (``retry_at`` None) or due again at ``retry_at``."""
        ...

    async def cancel_scheduled(self, queue_id: str) -> bool:
        """Drop a held send that is not being sent now; False if there is none to drop."""
        ...

    async def query_events(self, query: EventQuery) -> list[MailEvent]:
        """Events of API sends matching ``query``, by id, at most ``query.limit``."""
        ...


class Lease(Protocol):
    """A lock held until ``release`` (or until the holder's process dies)."""

    def release(self) -> None: ...


class Locks(Protocol):
    async def lock_maildrop(self, account_id: int) -> Lease | None:
        """RFC 1939 §8: one POP3 session per maildrop at a time, across every process
        (and, on a shared backend, every node). None when another session holds it."""
        ...


class ChangeFeed(Protocol):
    def subscribe(self, account_id: int) -> AsyncIterator[Change]:
        """Registers at once (not at the first ``__anext__``): a session that subscribes,
        then reads, then waits misses nothing. Changes of every process sharing the
        installation arrive here (from another process within about a second, normally
        milliseconds). A subscriber that falls behind gets a "resync" change."""
        ...


class Store(Protocol):
    # Read-only (properties), so that a backend whose one object plays several parts
    # (``self.accounts = self``) satisfies the protocol: attributes would be invariant.
    @property
    def accounts(self) -> Accounts: ...
    @property
    def mailboxes(self) -> Mailboxes: ...
    @property
    def messages(self) -> Messages: ...
    @property
    def changes(self) -> ChangeFeed: ...
    @property
    def locks(self) -> Locks: ...
    @property
    def queue(self) -> Queue: ...
    @property
    def api(self) -> Api: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Webhook:
    """A URL that receives the events of API sends as signed JSON POSTs.

    ``cursor`` is the id of the last event handled: the events after it, in id order,
    are the ones still to send. ``types`` empty: every type; ``sender_domain`` set: only
    the events of sends from that domain (the creating key's restriction)."""

    id: int
    url: str
    secret: str
    types: tuple[str, ...]
    sender_domain: str | None
    created_at: float
    cursor: int
    next_attempt: float = 0.0  # due from then (a retry after a failure)
    attempts: int = 0  # failed attempts since the last success
    lease_until: float = 0.0  # claimed by a dispatcher until then
    last_error: str = ""
    last_success: float | None = None


class Webhooks(Protocol):
    """Registered webhooks and the state of their deliveries.

    Invariants: a webhook's ``cursor`` only grows, and moves only when the caller settles
    a delivery that got its events through (or found none it wanted), so every event after
    it is sent at least once, in order, and none is skipped. A webhook is claimed by one
    dispatcher at a time, across processes; a claim is a lease (a time), so one whose
    holder died lapses by itself and the webhook is due again."""

    async def create_webhook(
        self, url: str, secret: str, types: tuple[str, ...], sender_domain: str | None
    ) -> Webhook:
        """A new webhook whose ``cursor`` is the newest event's id: it gets only the
        events recorded after it was made."""
        ...

    async def list_webhooks(self, sender_domain: str | None = None) -> list[Webhook]:
        """By id; with ``sender_domain``, only the webhooks restricted to that domain
        (None: every webhook)."""
        ...

    async def get_webhook(self, webhook_id: int) -> Webhook | None: ...

    async def delete_webhook(self, webhook_id: int) -> None:
        """``NotFound`` if there is no such webhook."""
        ...

    async def last_event_id(self) -> int:
        """The id of the newest event (0: none). Ids grow in commit order, so once every
        API event up to this id that a webhook wants was handled, its cursor may move
        here: a dispatcher skips at once over the events that are not its own."""
        ...

    async def claim_webhooks(self, now: float, limit: int, lease: float) -> list[Webhook]:
        """Up to ``limit`` webhooks due at ``now`` (``next_attempt`` <= now, no live
        lease) that have an event after their cursor, by ``next_attempt``, leased until
        now + ``lease``."""
        ...

    async def settle_webhook(
        self,
        webhook_id: int,
        *,
        cursor: int | None,
        next_attempt: float,
        attempts: int,
        error: str,
    ) -> None:
        """End a claim: lift the lease, move the cursor to ``cursor`` (None: unchanged;
        never backwards), and record the outcome: ``error`` "" is a success (the time is
        kept as ``last_success``). A webhook deleted meanwhile is ignored."""
        ...
