"""The byte stream a session talks over: a socket connection, or a test's in-memory stream."""

from __future__ import annotations

from typing import Protocol


class Channel(Protocol):
    @property
    def peer(self) -> tuple[str, int]: ...

    async def read(self) -> bytes:
        """The next bytes from the client; ``b""`` once it has closed."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    async def drain(self) -> None: ...

    def discard_pending(self) -> int:
        """Drop what arrived but was not read yet (plaintext pipelined behind STLS)."""
        ...

    async def upgrade_tls(self) -> str:
        """Run the TLS handshake (server side); returns protocol and cipher."""
        ...

    def expect_within(self, seconds: float) -> None:
        """The next complete command must arrive within ``seconds`` (an idle timeout)."""
        ...
