"""The embedded SQLite backend (default): one database file plus a blob directory.

Group commit on one writer thread, WAL readers on a small pool.
May import: mailwright.core, mailwright.message, mailwright.store.
"""

from mailwright.store.sqlite.store import SqliteStore, open_store

__all__ = ["SqliteStore", "open_store"]
