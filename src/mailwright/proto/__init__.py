"""Sans-IO protocol machines: bytes in, events out; replies in, bytes out.

No sockets, asyncio, TLS or storage here; drivers in ``serve`` and sessions in ``intake``/``access`` do that.
May import: mailwright.core.
"""
