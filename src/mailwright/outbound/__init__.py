"""A message leaves: the SMTP client that hands one message to one remote host, with TLS,
ESMTP negotiation and per-recipient results (the queue runner that drives it comes later).

Reads messages in chunks; reports every outcome as data (delivered / deferred / failed).
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store.api.
"""
