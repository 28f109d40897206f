"""Every accept/reject/defer decision, as Verdicts, at connection, sender, recipient and body stage.

Functions take facts and return ``Accept``, ``Reject(reply)`` or ``Defer(reply)``; they do no I/O.
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store.api.
"""
