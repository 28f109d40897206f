"""A message arrives: routing of recipients, the per-message Transaction, and the SMTP session.

Every entry point (SMTP now; submission, HTTP, CLI and DSNs later) hands messages to the same Transaction.
May import: mailwright.core, mailwright.message, mailwright.proto, mailwright.dns, mailwright.config, mailwright.store.api, mailwright.policy.
"""
