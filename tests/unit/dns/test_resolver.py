"""DnsResolver against a real DNS server: dnsmasq on 127.0.0.1 at a free port (RFC 5321 §5.1,
RFC 7505), plus a tiny in-test responder for the answers dnsmasq will not give (SERVFAIL).

Every lookup runs with small timeouts and inside ``asyncio.wait_for``: nothing here can hang.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar, cast

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mailwright.core.errors import ConfigError
from mailwright.dns.resolver import (
    DnsResolver,
    MxHost,
    MxResult,
    MxStatus,
    TemporaryDnsError,
    address_literal,
)
from tests.interop.dnsmasq import Dnsmasq

T = TypeVar("T")
LIMIT = 20.0  # seconds any one test's DNS work may take


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[int]:
    """A dnsmasq serving the records below (names under .test not listed are NXDOMAIN);
    yields its port. MX records are listed out of preference order, with ties and
    duplicates, so that what the tests see is the resolver's own sorting."""
    with Dnsmasq(
        mx={
            "a.test": [(20, "mx2.a.test"), (10, "mx1.a.test")],
            "tie.test": [
                (10, "t1.tie.test"),
                (10, "t2.tie.test"),
                (10, "t3.tie.test"),
                (50, "last.tie.test"),
            ],
            "mixed.test": [(10, "real.mixed.test")],
            "dup.test": [(20, "same.dup.test"), (10, "same.dup.test")],
        },
        null_mx=["null.test", "mixed.test"],
        a={
            "mx1.a.test": ["127.0.0.2", "::2"],
            "mx2.a.test": "127.0.0.3",
            "implicit.test": "127.0.0.4",
            "implicit6.test": "::4",
        },
        txt={"nohost.test": "v=spf1 -all"},
        extra_args=["--cname=alias.test,a.test"],
    ) as server:
        yield server.port


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, LIMIT)

    return asyncio.run(bounded())


def resolver(port: int, **kwargs: object) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=port, timeout=1.0, lifetime=3.0, **kwargs)  # type: ignore[arg-type]


# -- MX selection (RFC 5321 §5.1) -----------------------------------------------------------


def test_mx_sorted_by_preference(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("a.test"))
    assert result == MxResult(
        "a.test", MxStatus.OK, (MxHost("mx1.a.test", 10), MxHost("mx2.a.test", 20))
    )
    assert not result.permanent and not result.temporary
    assert result.enhanced_status == "2.0.0"


def test_trailing_dot_and_case_are_accepted(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("A.Test."))
    assert [h.name for h in result.hosts] == ["mx1.a.test", "mx2.a.test"]
    assert result.domain == "A.Test"


def test_equal_preferences_are_shuffled(dnsmasq: int) -> None:
    orders = set()
    for seed in range(30):
        result = run(resolver(dnsmasq, rng=random.Random(seed)).mx_hosts("tie.test"))
        names = [h.name for h in result.hosts]
        assert sorted(names[:3]) == ["t1.tie.test", "t2.tie.test", "t3.tie.test"]
        assert names[3] == "last.tie.test"  # a higher preference always comes after
        assert [h.preference for h in result.hosts] == [10, 10, 10, 50]
        orders.add(tuple(names[:3]))
    assert len(orders) > 1  # the tie is broken at random, not by the server's order


def test_a_host_listed_twice_is_tried_once_at_its_best_preference(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("dup.test"))
    assert result.hosts == (MxHost("same.dup.test", 10),)


def test_cname_to_a_domain_with_mx_is_followed(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("alias.test"))
    assert result.status is MxStatus.OK
    assert [h.name for h in result.hosts] == ["mx1.a.test", "mx2.a.test"]


def test_implicit_mx_when_there_is_no_mx(dnsmasq: int) -> None:
    r = resolver(dnsmasq)
    assert run(r.mx_hosts("implicit.test")) == MxResult(
        "implicit.test", MxStatus.OK, (MxHost("implicit.test", 0, implicit=True),)
    )
    six = run(r.mx_hosts("implicit6.test"))  # an AAAA record alone is enough
    assert six.hosts == (MxHost("implicit6.test", 0, implicit=True),)


def test_no_mx_and_no_address_is_permanent(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("nohost.test"))
    assert result.status is MxStatus.NO_MAIL_HOST
    assert result.permanent and not result.temporary
    assert result.hosts == ()
    assert result.enhanced_status == "5.4.4"


def test_null_mx_is_reported(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("null.test"))
    assert result.status is MxStatus.NULL_MX
    assert result.permanent
    assert result.enhanced_status == "5.1.10"  # RFC 7505 §4.2
    assert "null MX" in result.reason


def test_null_mx_beside_real_hosts_is_ignored(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("mixed.test"))
    assert result.hosts == (MxHost("real.mixed.test", 10),)


def test_nxdomain_is_permanent(dnsmasq: int) -> None:
    result = run(resolver(dnsmasq).mx_hosts("nonesuch.test"))
    assert result.status is MxStatus.NO_DOMAIN
    assert result.permanent
    assert result.enhanced_status == "5.1.2"
    assert "NXDOMAIN" in result.reason


def test_refused_is_temporary(dnsmasq: int) -> None:
    # dnsmasq has no upstream, so a name outside .test is REFUSED: no answer, try later.
    result = run(resolver(dnsmasq).mx_hosts("example.com"))
    assert result.status is MxStatus.TEMPORARY
    assert result.temporary and not result.permanent
    assert result.enhanced_status == "4.4.3"


def test_invalid_names_are_permanent(dnsmasq: int) -> None:
    r = resolver(dnsmasq)
    assert run(r.mx_hosts("a..test")).status is MxStatus.NO_DOMAIN
    assert run(r.mx_hosts("x" * 64 + ".test")).status is MxStatus.NO_DOMAIN


def test_address_literal_domains_need_no_dns() -> None:
    r = DnsResolver(["127.0.0.1"], port=9, timeout=0.1, lifetime=0.2)
    result = run(r.mx_hosts("[127.0.0.1]"))
    assert result.hosts == (MxHost("[127.0.0.1]", 0, implicit=True),)
    assert run(r.addresses("[127.0.0.1]")) == ["127.0.0.1"]
    assert run(r.addresses("[IPv6:::1]")) == ["::1"]
    assert run(r.addresses("192.0.2.1")) == ["192.0.2.1"]


def test_address_literal_parsing() -> None:
    assert address_literal("[IPv6:2001:DB8::1]") == "2001:db8::1"
    assert address_literal("::1") == "::1"
    assert address_literal("[fe80::1%eth0]") is None
    assert address_literal("mx.example") is None
    assert address_literal("[mx.example]") is None


# -- addresses -------------------------------------------------------------------------------


def test_addresses_ipv4_first_by_default(dnsmasq: int) -> None:
    assert run(resolver(dnsmasq).addresses("mx1.a.test")) == ["127.0.0.2", "::2"]


def test_addresses_ipv6_first_when_configured(dnsmasq: int) -> None:
    assert run(resolver(dnsmasq, prefer_ipv6=True).addresses("mx1.a.test")) == ["::2", "127.0.0.2"]


def test_addresses_of_a_host_with_one_family(dnsmasq: int) -> None:
    r = resolver(dnsmasq)
    assert run(r.addresses("mx2.a.test")) == ["127.0.0.3"]
    assert run(r.addresses("implicit6.test.")) == ["::4"]


def test_addresses_of_an_unknown_host_are_none(dnsmasq: int) -> None:
    assert run(resolver(dnsmasq).addresses("nonesuch.test")) == []
    assert run(resolver(dnsmasq).addresses("nohost.test")) == []  # exists, but no A/AAAA


def test_addresses_raise_when_dns_cannot_say(dnsmasq: int) -> None:
    with pytest.raises(TemporaryDnsError, match="nameservers failed"):
        run(resolver(dnsmasq).addresses("host.example.com"))


# -- failures a stub resolver must survive: SERVFAIL, silence --------------------------------


Answerer = Callable[[dns.message.Message], dns.message.Message]


class Responder(asyncio.DatagramProtocol):
    """A DNS server in the test: ``answer`` turns each query into a response."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        assert self.transport is not None
        self.transport.sendto(self.answer(query).to_wire(), addr)


def servfail(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response


def a_only(query: dns.message.Message) -> dns.message.Message:
    """127.0.0.9 for A; SERVFAIL for anything else (a broken AAAA path)."""
    if query.question[0].rdtype != dns.rdatatype.A:
        return servfail(query)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    name = query.question[0].name
    response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.9"))
    return response


async def with_responder(
    answer: Answerer, body: Callable[[DnsResolver], Awaitable[T]], **kwargs: object
) -> tuple[T, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(answer), local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        r = DnsResolver(["127.0.0.1"], port=port, timeout=0.5, lifetime=2.0, **kwargs)  # type: ignore[arg-type]
        return await body(r), protocol.queries
    finally:
        transport.close()


def test_servfail_is_temporary() -> None:
    async def body(r: DnsResolver) -> MxResult:
        return await r.mx_hosts("a.test")

    result, queries = run(with_responder(servfail, body))
    assert result.status is MxStatus.TEMPORARY
    assert "SERVFAIL" in result.reason
    assert queries == 1  # SERVFAIL is an answer: not retried within the lookup


def test_servfail_on_the_implicit_mx_lookup_is_temporary() -> None:
    def no_mx_then_servfail(query: dns.message.Message) -> dns.message.Message:
        if query.question[0].rdtype == dns.rdatatype.MX:
            return dns.message.make_response(query)  # NOERROR, no records
        return servfail(query)

    async def body(r: DnsResolver) -> MxResult:
        return await r.mx_hosts("implicit.test")

    result, _ = run(with_responder(no_mx_then_servfail, body))
    assert result.status is MxStatus.TEMPORARY


def test_half_an_answer_is_used() -> None:
    async def body(r: DnsResolver) -> list[str]:
        return await r.addresses("host.test")

    found, _ = run(with_responder(a_only, body, prefer_ipv6=True))
    assert found == ["127.0.0.9"]  # the AAAA SERVFAIL does not hide the A record


def test_a_silent_nameserver_times_out_within_the_lifetime() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries vanish
        port = silent.getsockname()[1]
        r = DnsResolver(["127.0.0.1"], port=port, timeout=0.2, lifetime=0.6)
        start = time.monotonic()
        result = run(r.mx_hosts("a.test"))
        elapsed = time.monotonic() - start
        assert result.status is MxStatus.TEMPORARY
        assert "timeout" in result.reason
        assert elapsed < 3.0
        with pytest.raises(TemporaryDnsError, match="timeout"):
            run(r.addresses("mx1.a.test"))


def test_system_configuration_is_used_when_no_nameservers_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.asyncresolver
    import dns.resolver

    def no_config(self: object, configure: bool = True) -> None:
        raise dns.resolver.NoResolverConfiguration("no /etc/resolv.conf")

    monkeypatch.setattr(dns.asyncresolver.Resolver, "__init__", no_config)
    with pytest.raises(ConfigError) as info:
        DnsResolver()
    assert info.value.key == "dns.nameservers"
