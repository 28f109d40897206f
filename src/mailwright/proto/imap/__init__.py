"""The IMAP server machine (IMAP4rev1 RFC 3501, IMAP4rev2 RFC 9051, with LITERAL+, IDLE, SASL-IR, COMPRESS and the command syntax of CONDSTORE/QRESYNC, ESEARCH, UIDPLUS, MOVE, LIST-EXTENDED, SORT/THREAD, QUOTA).

``server.ServerConnection`` turns received bytes into events (``command``, ``events``) and responses (``response``) into bytes; ``state`` holds every sequencing rule, ``parser`` the grammar, ``numset`` sequence sets and ``mutf7`` modified UTF-7 mailbox names.
May import: mailwright.core.
"""
