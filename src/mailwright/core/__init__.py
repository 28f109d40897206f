"""Vocabulary shared by every layer: addresses, replies, errors, ids and log helpers.

Nothing here knows about sockets, storage or a protocol's sequencing.
May import: stdlib.
"""
