"""Storage errors. Backends translate their driver's exceptions into these."""

from mailwright.core.errors import MailwrightError


class StoreError(MailwrightError):
    """Base of every storage error."""


class NotFound(StoreError):
    """The named domain, account, alias, mailbox or message does not exist."""


class Conflict(StoreError):
    """It already exists, or the change would break a rule (e.g. a domain still in use)."""


class QuotaExceeded(StoreError):
    """The account's quota would be exceeded."""


class TransientStorageError(StoreError):
    """Try again later (disk full, database busy too long, I/O error)."""
