"""The only socket code: asyncio listeners, TLS, timeouts and connection limits.

Each listener is a thin adapter between a stream and a sans-IO machine plus its session.
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store, mailwright.policy, mailwright.intake, mailwright.outbound, mailwright.access.
"""
