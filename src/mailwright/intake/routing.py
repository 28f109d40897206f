"""Recipient routing: an address → the local mailboxes it reaches.

Order of lookup for ``local+tag@domain``: the exact address (account, then alias), then
the address without its sub-address tag, then the domain's catch-all alias ``@domain``.
Alias targets are resolved again (aliases of aliases), at most ``_MAX_DEPTH`` deep, and
each account receives one copy however many paths lead to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwright.core.address import Address, AddressError
from mailwright.store.api import Accounts, Target

_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Route:
    local_domain: bool
    targets: tuple[Target, ...] = field(default=())

    @property
    def known(self) -> bool:
        return bool(self.targets)


class Router:
    def __init__(self, accounts: Accounts, subaddress_delimiter: str = "+") -> None:
        self._accounts = accounts
        self._delim = subaddress_delimiter

    def keys(self, address: Address) -> tuple[str, str | None]:
        key = address.key
        local = key.rsplit("@", 1)[0]
        if self._delim and self._delim in local and not address.is_quoted:
            base = local.split(self._delim, 1)[0]
            if base:
                return key, f"{base}@{address.domain}"
        return key, None

    async def route(self, address: Address) -> Route:
        key, base = self.keys(address)
        lookup = await self._accounts.lookup_recipient(key, base)
        if not lookup.local_domain:
            return Route(local_domain=False)
        if lookup.account is not None:
            return Route(True, (Target(lookup.account.id),))
        seen_accounts: dict[int, Target] = {}
        await self._expand(lookup.alias_targets, seen_accounts, {key}, 1)
        return Route(True, tuple(seen_accounts.values()))

    async def _expand(
        self, targets: tuple[str, ...], out: dict[int, Target], seen: set[str], depth: int
    ) -> None:
        if depth > _MAX_DEPTH:
            return
        for text in targets:
            if text in seen:
                continue
            seen.add(text)
            try:
                address = Address.parse(text, utf8=True)
            except AddressError:
                continue
            key, base = self.keys(address)
            lookup = await self._accounts.lookup_recipient(key, base)
            if lookup.account is not None:
                out.setdefault(lookup.account.id, Target(lookup.account.id))
            elif lookup.alias_targets:
                await self._expand(lookup.alias_targets, out, seen, depth + 1)
