"""Benchmark harness: mailwright side by side with Postfix (see bench/README.md)."""
