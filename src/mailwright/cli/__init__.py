"""The ``mailwright`` command line: init, serve, check-config, domains, users, aliases, mailboxes.

Every command finds its config from ``--config FILE`` or ``MAILWRIGHT_CONFIG``.
May import: every mailwright package.
"""
