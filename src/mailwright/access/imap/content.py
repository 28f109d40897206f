"""A message's bytes and parsed structure, loaded at most once per command.

The structure (``message.structure``) is computed the first time any session needs it
and cached in the store beside the message, so ENVELOPE, BODYSTRUCTURE and sections are
never parsed again for that message, by any session.
"""

from __future__ import annotations

from mailwright.message.structure import Structure, analyze
from mailwright.store.api import Messages


class Content:
    """One message's content for the length of one command."""

    __slots__ = ("_messages", "_raw", "_structure", "message_id")

    def __init__(self, messages: Messages, message_id: int) -> None:
        self._messages = messages
        self.message_id = message_id
        self._raw: bytes | None = None
        self._structure: Structure | None = None

    async def raw(self) -> bytes:
        if self._raw is None:
            self._raw = await self._messages.read_message(self.message_id)
        return self._raw

    async def structure(self) -> Structure:
        if self._structure is not None:
            return self._structure
        cached = await self._messages.read_structure(self.message_id)
        if cached is not None:
            try:
                self._structure = Structure.from_bytes(cached)
                return self._structure
            except ValueError:
                pass  # an older format: parse again, and cache the new one
        self._structure = analyze(await self.raw())
        await self._messages.save_structure(self.message_id, self._structure.to_bytes())
        return self._structure
