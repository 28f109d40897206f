"""RFC 5322 / MIME over bytes: streaming checks of a message as it arrives, trace headers.

Works on bytes and chunks, never needs the whole message in memory.
May import: mailwright.core.
"""
