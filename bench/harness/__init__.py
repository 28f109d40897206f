"""Benchmark harness: mailwright side by side with Postfix and Dovecot (see bench/README.md)."""
