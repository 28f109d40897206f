"""Loopback helpers: free ports and waiting for a listener (bounded)."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_greeting(
    port: int, prefix: str = "220", timeout: float = 30.0, farewell: bytes = b"QUIT\r\n"
) -> str:
    """Connect to 127.0.0.1:port until a greeting starting with `prefix` arrives (SMTP
    "220", POP3 "+OK", IMAP "* OK"); say `farewell` (QUIT; IMAP: a LOGOUT) and return
    the greeting."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                data = s.recv(512).decode("latin-1")
                if data.startswith(prefix):
                    try:
                        s.sendall(farewell)
                        s.recv(512)
                    except OSError:
                        pass
                    return data.strip()
                last = RuntimeError(f"unexpected greeting {data!r}")
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"no {prefix!r} greeting on 127.0.0.1:{port} within {timeout}s: {last}")


def wait_for_banner(port: int, timeout: float = 30.0) -> str:
    """Connect to 127.0.0.1:port until an SMTP 220 greeting arrives; return it."""
    return wait_for_greeting(port, "220", timeout)


def wait_for_imap(port: int, timeout: float = 30.0) -> str:
    """Connect to 127.0.0.1:port until an IMAP "* OK" greeting arrives; return it."""
    return wait_for_greeting(port, "* OK", timeout, farewell=b"a LOGOUT\r\n")
