"""Where mail for a domain goes: MX selection (RFC 5321 §5.1, RFC 7505) over dnspython.

Invariants:
- nothing raises for a lookup that fails: ``mx_hosts`` reports every outcome in an
  ``MxResult`` whose ``status`` says whether it is final (``permanent``) or worth a retry
  (``temporary``), so the queue can bounce or defer without knowing DNS;
- ``addresses`` returns ``[]`` only when the name certainly has no address (NXDOMAIN or no
  A/AAAA); when it cannot tell (SERVFAIL, REFUSED, timeout) it raises
  ``TemporaryDnsError``;
- every lookup is bounded by ``lifetime`` seconds, whatever the nameservers do;
- the resolver has no global state: each ``DnsResolver`` carries its own nameservers, so two
  instances in one process (two test servers) never see each other's settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.mxbase import MXBase

from mailwright.core.errors import ConfigError
from mailwright.core.log import event

log = logging.getLogger("mailwright.dns")
_CACHE_SIZE = 10_000  # names


class MxStatus(Enum):
    OK = "ok"
    NULL_MX = "null-mx"  # RFC 7505: the domain says it accepts no mail
    NO_DOMAIN = "no-domain"  # NXDOMAIN (or a name that cannot exist)
    NO_MAIL_HOST = "no-mail-host"  # the domain exists but has no MX and no A/AAAA
    TEMPORARY = "temporary"  # SERVFAIL, REFUSED, timeout: ask again later


_PERMANENT = frozenset({MxStatus.NULL_MX, MxStatus.NO_DOMAIN, MxStatus.NO_MAIL_HOST})
# RFC 3463 codes for a DSN or a log line: X.1.10 is RFC 7505 §4.2's; X.4.3 "directory
# server failure" is what a DNS failure is reported as (Postfix does the same).
_ENHANCED = {
    MxStatus.OK: "2.0.0",
    MxStatus.NULL_MX: "5.1.10",
    MxStatus.NO_DOMAIN: "5.1.2",
    MxStatus.NO_MAIL_HOST: "5.4.4",
    MxStatus.TEMPORARY: "4.4.3",
}


@dataclass(frozen=True, slots=True)
class MxHost:
    """One host to try. ``implicit``: there was no MX, so this is the domain itself
    (RFC 5321 §5.1's implicit MX) or an address literal."""

    name: str
    preference: int
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class MxResult:
    domain: str
    status: MxStatus
    hosts: tuple[MxHost, ...] = ()  # in the order to try them; empty unless OK
    reason: str = ""  # for logs and DSNs: what DNS said

    @property
    def permanent(self) -> bool:
        """Delivery to this domain cannot succeed: bounce now."""
        return self.status in _PERMANENT

    @property
    def temporary(self) -> bool:
        """DNS could not answer: defer and try again later."""
        return self.status is MxStatus.TEMPORARY

    @property
    def enhanced_status(self) -> str:
        """The RFC 3463 status code that describes this outcome."""
        return _ENHANCED[self.status]


class TemporaryDnsError(Exception):
    """A lookup could not be answered now (SERVFAIL, REFUSED, timeout)."""


class Resolver(Protocol):
    """What delivery needs from DNS; tests and the composition root inject an implementation."""

    async def mx_hosts(self, domain: str) -> MxResult: ...

    async def addresses(self, host: str) -> list[str]: ...


class _Kind(Enum):
    FOUND = "found"
    NODATA = "nodata"  # the name exists, without records of that type
    NXDOMAIN = "nxdomain"
    TEMPORARY = "temporary"


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: _Kind
    answer: dns.resolver.Answer | None = None
    reason: str = ""


def address_literal(text: str) -> str | None:
    """The IP address in ``text`` when it is one: ``1.2.3.4``, ``[1.2.3.4]``,
    ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3) or a bare IPv6 address; else None."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    if "%" in inner:
        return None  # a zone index is no mail destination
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


class DnsResolver:
    """The dnspython stub resolver, asking ``nameservers`` (the system's when empty)."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        port: int = 53,
        timeout: float = 5.0,
        lifetime: float = 20.0,
        prefer_ipv6: bool = False,
        rng: random.Random | None = None,
        cache: bool = True,
    ) -> None:
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(nameservers)
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError(
                    "dns.nameservers", "the system has no resolver configuration; set nameservers"
                ) from None
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = lifetime
        resolver.retry_servfail = False  # a SERVFAIL is an answer: "try later"
        # Answers are kept for their TTL: a busy queue asks for the same MX and A records
        # over and over (the system's stub resolver may have no cache at all).
        resolver.cache = dns.resolver.LRUCache(_CACHE_SIZE) if cache else None
        self._resolver = resolver
        self._prefer_ipv6 = prefer_ipv6
        self._rng = rng if rng is not None else random.Random()

    # -- public ---------------------------------------------------------------------------

    async def mx_hosts(self, domain: str) -> MxResult:
        """The hosts to try for mail to ``domain``, in order (RFC 5321 §5.1)."""
        domain = domain.rstrip(".")
        literal = address_literal(domain) if domain.startswith("[") else None
        if literal is not None:
            return MxResult(domain, MxStatus.OK, (MxHost(domain, 0, implicit=True),))
        outcome = await self._query(domain, dns.rdatatype.MX)
        if outcome.kind is _Kind.NXDOMAIN:
            result = MxResult(domain, MxStatus.NO_DOMAIN, reason=outcome.reason)
        elif outcome.kind is _Kind.TEMPORARY:
            result = MxResult(domain, MxStatus.TEMPORARY, reason=outcome.reason)
        elif outcome.kind is _Kind.FOUND and outcome.answer is not None:
            result = self._from_mx(domain, outcome.answer)
        else:
            result = await self._implicit(domain)
        event(
            log,
            logging.DEBUG,
            "dns.mx",
            domain=domain,
            status=result.status.value,
            hosts=",".join(f"{h.preference}:{h.name}" for h in result.hosts),
            reason=result.reason,
        )
        return result

    async def addresses(self, host: str) -> list[str]:
        """The IPv6 and IPv4 addresses of ``host``, IPv6 first only if ``prefer_ipv6``.

        ``[]``: the host has no address. Raises ``TemporaryDnsError`` when DNS cannot say.
        """
        literal = address_literal(host)
        if literal is not None:
            return [literal]
        found, reason = await self._addresses(host.rstrip("."))
        if found is None:
            raise TemporaryDnsError(reason)
        return found

    # -- internals ------------------------------------------------------------------------

    def _from_mx(self, domain: str, answer: dns.resolver.Answer) -> MxResult:
        records = [r for r in answer if isinstance(r, MXBase)]
        usable = [r for r in records if r.exchange != dns.name.root]
        if not usable:
            # RFC 7505 §3: a single MX of preference 0 and target "." says "no mail here".
            # A domain that mixes it with real hosts breaks the RFC; the real hosts win.
            return MxResult(domain, MxStatus.NULL_MX, reason="domain publishes a null MX")
        by_preference: dict[int, list[str]] = {}
        for record in usable:
            name = record.exchange.to_text(omit_final_dot=True)
            by_preference.setdefault(int(record.preference), []).append(name)
        hosts: list[MxHost] = []
        seen: set[str] = set()
        for preference in sorted(by_preference):
            names = by_preference[preference]
            # RFC 5321 §5.1: hosts of equal preference are tried in random order.
            self._rng.shuffle(names)
            for name in names:
                if name.lower() not in seen:
                    seen.add(name.lower())
                    hosts.append(MxHost(name, preference))
        return MxResult(domain, MxStatus.OK, tuple(hosts))

    async def _implicit(self, domain: str) -> MxResult:
        # RFC 5321 §5.1: no MX records, so the domain itself is the one host, with
        # preference 0, if it has an address.
        found, reason = await self._addresses(domain)
        if found is None:
            return MxResult(domain, MxStatus.TEMPORARY, reason=reason)
        if not found:
            return MxResult(
                domain, MxStatus.NO_MAIL_HOST, reason="no MX and no A/AAAA records for the domain"
            )
        return MxResult(domain, MxStatus.OK, (MxHost(domain, 0, implicit=True),))

    async def _addresses(self, host: str) -> tuple[list[str] | None, str]:
        """(addresses, "") or ([], "") for no address, or (None, reason) when DNS cannot say."""
        v6, v4 = await asyncio.gather(
            self._query(host, dns.rdatatype.AAAA), self._query(host, dns.rdatatype.A)
        )
        families = (v6, v4) if self._prefer_ipv6 else (v4, v6)
        found = [
            r.to_text()
            for outcome in families
            if outcome.answer is not None
            for r in outcome.answer
        ]
        temporary = [o.reason for o in (v6, v4) if o.kind is _Kind.TEMPORARY]
        if found:
            if temporary:
                # Half an answer is enough to try: the other family may come back later.
                event(log, logging.INFO, "dns.partial", host=host, reason="; ".join(temporary))
            return found, ""
        if temporary:
            return None, "; ".join(temporary)
        return [], ""

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Outcome:
        label = f"{name}/{dns.rdatatype.to_text(rdtype)}"
        try:
            qname = dns.name.from_text(name)
            answer = await self._resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return _Outcome(_Kind.NXDOMAIN, reason=f"{label}: no such domain (NXDOMAIN)")
        except dns.resolver.YXDOMAIN:
            return _Outcome(_Kind.NXDOMAIN, reason=f"{label}: name too long after DNAME")
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            return _Outcome(_Kind.NXDOMAIN, reason=f"{label}: invalid name: {exc}")
        except dns.name.IDNAException as exc:
            return _Outcome(_Kind.NXDOMAIN, reason=f"{label}: invalid name: {exc}")
        except dns.exception.Timeout:
            return _Outcome(_Kind.TEMPORARY, reason=f"{label}: DNS timeout")
        except dns.resolver.NoNameservers as exc:
            # Every nameserver answered SERVFAIL or REFUSED (or could not be reached).
            return _Outcome(_Kind.TEMPORARY, reason=f"{label}: nameservers failed: {_short(exc)}")
        except (dns.exception.DNSException, OSError) as exc:
            return _Outcome(_Kind.TEMPORARY, reason=f"{label}: DNS error: {_short(exc)}")
        if answer.rrset is None or len(answer.rrset) == 0:
            return _Outcome(_Kind.NODATA, reason=f"{label}: no records")
        return _Outcome(_Kind.FOUND, answer)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


class UnconfiguredResolver:
    """Stands in when the machine has no resolver configuration and none is set: every
    lookup is a temporary failure, so remote mail waits in the queue (and the log says
    why) instead of the server refusing to start for want of outbound DNS."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def mx_hosts(self, domain: str) -> MxResult:
        return MxResult(domain, MxStatus.TEMPORARY, reason=self.reason)

    async def addresses(self, host: str) -> list[str]:
        raise TemporaryDnsError(self.reason)
