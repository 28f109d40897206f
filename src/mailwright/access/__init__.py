"""A user reads a mailbox: the POP3 session (and, later, IMAP) over the store's API.

Sessions drive their sans-IO machine over a ``Channel`` (bytes in and out), so the same
code runs behind a socket and in transcript tests.
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store.api, mailwright.policy.
"""
