"""Names to mail hosts: the resolver protocol and its dnspython implementation, MX selection.

Turns a recipient domain into the ordered hosts and addresses delivery tries (RFC 5321 §5.1).
May import: mailwright.core (and dnspython).
"""
