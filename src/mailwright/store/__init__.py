"""Storage: accounts, domains, aliases, mailboxes, messages, UIDs, flags and mod-sequences.

``api`` holds the narrow interfaces every protocol talks to; ``sqlite`` is the embedded default backend.
May import: mailwright.core, mailwright.message.
"""
