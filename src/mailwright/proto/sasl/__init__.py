"""The server side of SASL (RFC 4422) for every protocol that logs users in: PLAIN (RFC 4616) and LOGIN.

``mechanism`` turns client responses into challenges, credentials or a failure, and decodes and encodes the base64 lines that carry them; framing ("+ ", "334 ", the "*" cancel) stays with each protocol's machine.
May import: mailwright.core.
"""
