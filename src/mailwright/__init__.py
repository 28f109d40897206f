"""mailwright: a complete, self-hosted mail server.

SMTP, submission, IMAP, POP3 and an HTTP sending API in one program over one store.
"""

__version__ = "0.1.0"
