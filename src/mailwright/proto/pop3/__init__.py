"""The POP3 server machine (RFC 1939 with CAPA, RESP-CODES and PIPELINING from RFC 2449, STLS from RFC 2595, AUTH from RFC 5034).

``ServerConnection`` turns received bytes into events and replies into bytes, and dot-stuffs multi-line responses; ``state`` holds every sequencing rule.
May import: mailwright.core.
"""
