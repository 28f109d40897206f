"""Storage errors. Backends translate their driver's exceptions into these.

The subclasses let a protocol answer precisely (RFC 5530 response codes): ``AlreadyExists``
→ ALREADYEXISTS, ``HasChildren`` → HASCHILDREN, ``NotPermitted``/``InvalidName`` → CANNOT,
``NotFound`` → NONEXISTENT, ``QuotaExceeded`` → OVERQUOTA (RFC 9208 §4.3).
"""

from mailwright.core.errors import MailwrightError


class StoreError(MailwrightError):
    """Base of every storage error."""


class NotFound(StoreError):
    """The named domain, account, alias, mailbox or message does not exist."""


class Conflict(StoreError):
    """It already exists, or the change would break a rule (e.g. a domain still in use)."""


class AlreadyExists(Conflict):
    """A mailbox of that name already exists (CREATE, RENAME's new name)."""


class DuplicateRequest(Conflict):
    """An HTTP API send with an Idempotency-Key its API key already used."""


class HasChildren(Conflict):
    """The mailbox has inferior mailboxes, so it cannot be deleted (RFC 9051 §6.3.5)."""


class NotPermitted(Conflict):
    """Never allowed on this mailbox: deleting INBOX, renaming a mailbox under itself."""


class InvalidName(StoreError):
    """A mailbox name, flag or special-use attribute the store does not accept."""


class QuotaExceeded(StoreError):
    """The account's quota would be exceeded."""


class TransientStorageError(StoreError):
    """Try again later (disk full, database busy too long, I/O error)."""
