"""The storage interface every protocol talks to. Backends: ``sqlite`` (now), PostgreSQL (later).

Model (the same logical tables on every backend):
- a *message* is stored once (its bytes are a blob) however many mailboxes hold it;
- a *placement* puts a message in a mailbox under a UID with flags and a MODSEQ;
- UIDs are per mailbox, strictly increasing, never reused (``uidnext`` only grows);
  UIDVALIDITY is fixed when the mailbox is created;
- every change to a mailbox (delivery, flag change, expunge) takes the next MODSEQ of
  that mailbox; expunged UIDs are kept with their MODSEQ, so "what changed since
  MODSEQ n" (RFC 7162 CONDSTORE/QRESYNC) is a query, and that query is the change log;
- delivery is two-phase: the blob is made durable first, then one transaction inserts
  every placement; a crash between the two leaves only an unreferenced blob.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

INBOX = "INBOX"
# RFC 6154 special-use mailboxes every new account gets.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


@dataclass(frozen=True, slots=True)
class Domain:
    name: str


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    password_hash: str
    quota_bytes: int | None
    used_bytes: int


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
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    messages: int
    size: int


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
    """One placement made by ``deliver``."""

    account_id: int
    mailbox: str
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery goes: an account's mailbox (INBOX unless filed elsewhere)."""

    account_id: int
    mailbox: str = INBOX


@dataclass(frozen=True, slots=True)
class Change:
    """Published on the change feed after a commit."""

    account_id: int
    mailbox_id: int
    modseq: int
    kind: str  # "append" | "flags" | "expunge"
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
    async def add_account(self, address: str, password_hash: str) -> Account: ...
    async def set_password(self, address: str, password_hash: str) -> None: ...
    async def remove_account(self, address: str) -> None: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def add_alias(self, source: str, targets: Sequence[str]) -> None: ...
    async def remove_alias(self, source: str, target: str | None = None) -> None: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def lookup_recipient(self, key: str, base_key: str | None) -> RecipientLookup: ...


class Mailboxes(Protocol):
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]: ...
    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo: ...
    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo: ...


class Messages(Protocol):
    def new_blob(self) -> BlobWriter: ...
    async def deliver(
        self, blob: BlobWriter, queue_id: str, received_at: int, targets: Sequence[Target]
    ) -> list[Delivered]: ...
    async def list_placements(self, mailbox_id: int) -> list[Placement]: ...
    async def read_message(self, message_id: int) -> bytes: ...
    async def store_flags(
        self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> int: ...
    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> int: ...
    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]: ...


class Lease(Protocol):
    """A lock held until ``release`` (or until the holder's process dies)."""

    def release(self) -> None: ...


class Locks(Protocol):
    async def lock_maildrop(self, account_id: int) -> Lease | None:
        """RFC 1939 §8: one POP3 session per maildrop at a time, across every process
        (and, on a shared backend, every node). None when another session holds it."""
        ...


class ChangeFeed(Protocol):
    def subscribe(self, account_id: int) -> AsyncIterator[Change]: ...


class Store(Protocol):
    accounts: Accounts
    mailboxes: Mailboxes
    messages: Messages
    changes: ChangeFeed
    locks: Locks

    async def close(self) -> None: ...
