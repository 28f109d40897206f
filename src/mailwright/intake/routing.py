"""Recipient routing: an address → the local mailboxes it reaches.

Order of lookup for ``local+tag@domain``: the exact address (account, then alias), then
the address without its sub-address tag, then the domain's catch-all alias ``@domain``.
Alias targets are resolved again (aliases of aliases), at most ``_MAX_DEPTH`` deep, and
each account receives one copy however many paths lead to it.

Lookups are cached for ``cache_ttl`` seconds (a busy server sees the same recipients
over and over; each store lookup is a query or two, and a round trip for a store across
the network). A user added or removed with the CLI is therefore seen by a running server
within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwright.core.address import Address, AddressError
from mailwright.store.api import Account, Accounts, RecipientLookup, Target

_MAX_DEPTH = 8
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Route:
    local_domain: bool
    targets: tuple[Target, ...] = field(default=())
    # (quota_bytes, used_bytes) of each target's account, as of the (cached) lookup:
    # enough to refuse mail for a full mailbox at RCPT; the store enforces it exactly.
    quotas: tuple[tuple[int | None, int], ...] = field(default=())

    @property
    def known(self) -> bool:
        return bool(self.targets)


class Router:
    def __init__(
        self,
        accounts: Accounts,
        subaddress_delimiter: str = "+",
        *,
        hostname: str = "",
        cache_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._delim = subaddress_delimiter
        self._hostname = hostname.lower()
        self._ttl = cache_ttl
        self._clock = clock
        self._cache: dict[tuple[str, str | None], tuple[float, RecipientLookup]] = {}
        # Domains that are not ours, so that mail to many addresses of one foreign domain
        # (submission, relaying) costs one store lookup, not one per address.
        self._foreign: dict[str, float] = {}

    async def _lookup(self, key: str, base: str | None) -> RecipientLookup:
        now = self._clock()
        hit = self._cache.get((key, base))
        if hit is not None and hit[0] > now:
            return hit[1]
        lookup = await self._accounts.lookup_recipient(key, base)
        if self._ttl > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[(key, base)] = (now + self._ttl, lookup)
        return lookup

    def keys(self, address: Address) -> tuple[str, str | None]:
        key = address.key
        local = key.rsplit("@", 1)[0]
        if self._delim and self._delim in local and not address.is_quoted:
            base = local.split(self._delim, 1)[0]
            if base:
                return key, f"{base}@{address.domain}"
        return key, None

    async def route(self, address: Address) -> Route:
        if address.is_bare_postmaster:
            return await self._route_postmaster()
        domain = address.domain.lower()
        until = self._foreign.get(domain)
        if until is not None and until > self._clock():
            return Route(local_domain=False)
        key, base = self.keys(address)
        lookup = await self._lookup(key, base)
        if not lookup.local_domain:
            if self._ttl > 0:
                if len(self._foreign) >= _CACHE_MAX:
                    self._foreign.clear()
                self._foreign[domain] = self._clock() + self._ttl
            return Route(local_domain=False)
        if lookup.account is not None:
            account = lookup.account
            return Route(True, (Target(account.id),), ((account.quota_bytes, account.used_bytes),))
        seen_accounts: dict[int, Account] = {}
        await self._expand(lookup.alias_targets, seen_accounts, {key})
        return Route(
            True,
            tuple(Target(a.id) for a in seen_accounts.values()),
            tuple((a.quota_bytes, a.used_bytes) for a in seen_accounts.values()),
        )

    async def _route_postmaster(self) -> Route:
        """``RCPT TO:<Postmaster>``: the postmaster of the domain this host is named in,
        else of the first local domain that has one (RFC 5321 §4.5.1 requires it)."""
        domains = [d.name for d in await self._accounts.list_domains()]
        domains.sort(key=lambda d: not (self._hostname == d or self._hostname.endswith("." + d)))
        for domain in domains:
            route = await self.route(Address("postmaster", domain))
            if route.known:
                return route
        return Route(local_domain=True)

    async def _expand(
        self, targets: tuple[str, ...], out: dict[int, Account], seen: set[str]
    ) -> None:
        # Breadth first: each address is expanded at its shortest distance from the
        # recipient, so a long path that meets it near the depth limit cannot hide a
        # short one (depth first with a shared ``seen`` set did).
        frontier = list(targets)
        depth = 1
        while frontier and depth <= _MAX_DEPTH:
            following: list[str] = []
            for text in frontier:
                if text in seen:
                    continue
                seen.add(text)
                try:
                    address = Address.parse(text, utf8=True)
                except AddressError:
                    continue
                key, base = self.keys(address)
                lookup = await self._lookup(key, base)
                if lookup.account is not None:
                    out.setdefault(lookup.account.id, lookup.account)
                else:
                    following.extend(lookup.alias_targets)
            frontier = following
            depth += 1
