"""The SMTP server machine (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, STARTTLS).

``ServerConnection`` turns received bytes into events and replies into bytes; ``state`` holds every sequencing rule.
May import: mailwright.core.
"""
