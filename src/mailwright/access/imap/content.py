"""A message's bytes and parsed structure, loaded at most once per command.

The structure (``message.structure``) is computed the first time any session needs it
and cached in the store beside the message, so ENVELOPE, BODYSTRUCTURE and sections are
never parsed again for that message, by any session.
"""

from __future__ import annotations

import asyncio
import logging

from mailwright.message.structure import Structure, analyze
from mailwright.store.api import Messages
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.imap")


class Content:
    """One message's content for the length of one command."""

    __slots__ = ("_messages", "_raw", "_saving", "_structure", "message_id")

    def __init__(
        self, messages: Messages, message_id: int, saving: set[asyncio.Task[None]]
    ) -> None:
        """``saving``: the session's structure writes in flight (a task needs a
        reference until it is done)."""
        self._messages = messages
        self._saving = saving
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
        # A cache, not data: the client's answer does not wait for it to be written
        # (a commit with its fsync); the write joins the writer's next group commit.
        task = asyncio.ensure_future(self._save(self._structure.to_bytes()))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)
        return self._structure

    async def _save(self, data: bytes) -> None:
        try:
            await self._messages.save_structure(self.message_id, data)
        except StoreError as exc:  # the message was expunged meanwhile, or the disk is full
            log.debug("structure.not_saved message=%d error=%s", self.message_id, exc)
