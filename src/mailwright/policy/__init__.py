"""Every accept/reject/defer decision, as Verdicts, at connection, sender, recipient and body stage.

Functions take facts (and lookups injected as ``store.api`` Protocols) and return ``Accept``,
``Reject(reply)`` or ``Defer(reply)``; ``auth`` checks logins for every protocol. No sockets.
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store.api.
"""
