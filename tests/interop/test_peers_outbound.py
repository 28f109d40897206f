"""The peers of the outbound-delivery tests work: dnsmasq serves the records it is given
(RFC 1035, RFC 7505 null MX), and a private Postfix acts as a remote MX whose replies a
test controls (accept, 4xx, 5xx, down, STARTTLS)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from collections.abc import Callable, Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from mailwright.dns.resolver import DnsResolver, MxHost, MxStatus
from tests.interop.dnsmasq import Dnsmasq, dnsmasq_factory_fixture
from tests.interop.postfix_mx import PostfixMx, postfix_mx_factory_fixture

# Imported for the fixtures they define: dnsmasq_factory and postfix_mx_factory.
FIXTURES = (dnsmasq_factory_fixture, postfix_mx_factory_fixture)

# A DKIM record for an RSA-2048 key is about 400 characters: more than one TXT string.
DKIM = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 9 + "IDAQAB"
ODD_TXT = 'commas, "quotes", back\\slash, # and  two  blanks'

MESSAGE = (
    b"From: sender@origin.test\r\n"
    b"To: rcpt@remote.test\r\n"
    b"Subject: outbound smoke\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe \xe2\x80\x93 8-bit\r\n"
    b".a line with a leading dot\r\n"
    b"trailing blanks   \r\n"
)


def query(server: Dnsmasq, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, server.address, port=server.port, timeout=5)
    return dns.query.udp(q, server.address, port=server.port, timeout=5)


def rcpt(mx: PostfixMx, recipient: str) -> tuple[int, bytes]:
    with smtplib.SMTP(mx.address, mx.port, timeout=30) as smtp:
        smtp.ehlo("client.origin.test")
        smtp.mail("sender@origin.test")
        reply = smtp.rcpt(recipient)
        smtp.rset()
        return reply


def send(mx: PostfixMx, recipients: list[str], message: bytes = MESSAGE) -> None:
    with smtplib.SMTP(mx.address, mx.port, timeout=30) as smtp:
        smtp.sendmail("sender@origin.test", recipients, message, mail_options=["BODY=8BITMIME"])


# -- dnsmasq ----------------------------------------------------------------------------


def test_dnsmasq_serves_mx_a_txt_and_null_mx(
    dnsmasq_factory: Callable[..., Dnsmasq],
) -> None:
    server = dnsmasq_factory(
        mx={"remote.test": [(20, "mx2.remote.test"), (10, "mx.remote.test")]},
        a={"mx.remote.test": "127.0.0.2", "mx2.remote.test": ["127.0.0.3", "::3"]},
        txt={"sel._domainkey.remote.test": DKIM, "odd.remote.test": [ODD_TXT, "v=spf1 -all"]},
        null_mx=["nullmx.test"],
    )
    mx = query(server, "remote.test", "MX")
    assert sorted(r.to_text() for r in mx.answer[0]) == [
        "10 mx.remote.test.",
        "20 mx2.remote.test.",
    ]
    a = query(server, "mx2.remote.test", "A")
    assert [r.to_text() for r in a.answer[0]] == ["127.0.0.3"]
    aaaa = query(server, "mx2.remote.test", "AAAA")
    assert [r.to_text() for r in aaaa.answer[0]] == ["::3"]

    # Over TCP too: dnsmasq serves TCP from a child process, which stop() must end.
    [dkim] = query(server, "sel._domainkey.remote.test", "TXT", tcp=True).answer[0]
    assert len(dkim.strings) == 2 and all(len(s) <= 255 for s in dkim.strings)
    assert b"".join(dkim.strings).decode() == DKIM
    odd = query(server, "odd.remote.test", "TXT").answer[0]
    assert sorted(b"".join(r.strings).decode() for r in odd) == sorted([ODD_TXT, "v=spf1 -all"])

    null = query(server, "nullmx.test", "MX")
    assert [r.to_text() for r in null.answer[0]] == ["0 ."]  # RFC 7505 §3
    assert query(server, "nonesuch.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_dnsmasq_stops_and_starts_and_leaves_no_process_behind() -> None:
    with Dnsmasq(a={"h.test": "127.0.0.9"}) as server:
        assert server.proc is not None
        first = server.proc.pid
        assert query(server, "h.test", "A", tcp=True).answer
        port = server.port
        server.stop()  # DNS down: a query goes unanswered
        with pytest.raises(dns.exception.Timeout):
            dns.query.udp(
                dns.message.make_query("h.test", "A"), server.address, port=port, timeout=0.5
            )
        server.start()
        assert server.port == port
        assert server.proc is not None
        second = server.proc.pid
        assert query(server, "h.test", "A").answer
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dnsmasq_refuses_records_it_cannot_serve_as_given() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Dnsmasq(txt={"x.test": "line\nbreak"})
    with pytest.raises(ValueError, match="host name"):
        Dnsmasq(mx={"x.test": [(10, "bad,name")]})
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        Dnsmasq(a={"x.test": "mx.x.test"})


# -- Postfix as the remote MX -------------------------------------------------------------


@pytest.fixture(scope="module")
def remote() -> Iterator[PostfixMx]:
    with PostfixMx(domains=["remote.test", "other.test"]) as mx:
        yield mx


def test_postfix_mx_speaks_the_usual_esmtp(remote: PostfixMx) -> None:
    with smtplib.SMTP(remote.address, remote.port, timeout=30) as smtp:
        code, _ = smtp.ehlo("client.origin.test")
        assert code == 250
        for keyword in ("pipelining", "8bitmime", "smtputf8", "dsn", "enhancedstatuscodes"):
            assert smtp.has_extn(keyword), keyword
        assert not smtp.has_extn("starttls")


def test_postfix_mx_delivers_what_it_accepts_unchanged(remote: PostfixMx) -> None:
    before = len(remote.messages())
    send(remote, ["anyone@remote.test", "Someone.Else@other.test"])
    delivered = remote.wait_for(before + 2, timeout=30)[before:]
    assert len(delivered) == 2  # one file per recipient
    sent = MESSAGE.replace(b"\r\n", b"\n")  # Maildir files have LF line ends
    for raw in delivered:
        head, _, _ = raw.partition(b"\n\n")
        assert raw.endswith(sent), raw  # only trace headers are prepended
        assert b"Delivered-To: " in head
    recipients = sorted(raw.split(b"Delivered-To: ", 1)[1].split(b"\n", 1)[0] for raw in delivered)
    assert recipients == [b"Someone.Else@other.test", b"anyone@remote.test"]


def test_postfix_mx_refuses_to_relay(remote: PostfixMx) -> None:
    code, text = rcpt(remote, "someone@elsewhere.test")
    assert code == 554 and b"Relay access denied" in text


def test_set_reply_answers_rcpt_until_cleared(remote: PostfixMx) -> None:
    remote.set_reply("busy@remote.test", "451 4.3.0 Try again later")
    remote.set_reply("gone@remote.test", "550 5.1.1 No such user")
    code, text = rcpt(remote, "busy@remote.test")
    assert (code, b"4.3.0" in text, b"Try again later" in text) == (451, True, True)
    code, text = rcpt(remote, "gone@remote.test")
    assert (code, b"5.1.1" in text) == (550, True)
    assert rcpt(remote, "other@remote.test")[0] == 250  # only the named recipients

    remote.set_reply("busy@remote.test", None)
    assert rcpt(remote, "busy@remote.test")[0] == 250
    assert rcpt(remote, "gone@remote.test")[0] == 550
    remote.set_reply("gone@remote.test", None)
    assert rcpt(remote, "gone@remote.test")[0] == 250


def test_set_reply_refuses_what_would_not_take_effect(remote: PostfixMx) -> None:
    with pytest.raises(ValueError, match="domains"):
        remote.set_reply("x@elsewhere.test", "451 4.3.0 later")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        remote.set_reply("x@remote.test", "250 fine")


def test_stop_refuses_connections_and_start_accepts_again(
    postfix_mx_factory: Callable[..., PostfixMx],
) -> None:
    mx = postfix_mx_factory(address="127.0.0.3")
    mx.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(mx.address, mx.port, timeout=10)
    mx.start()
    send(mx, ["back@remote.test"])
    [raw] = mx.wait_for(1, timeout=30)
    assert raw.endswith(MESSAGE.replace(b"\r\n", b"\n"))


def test_starttls_is_offered_with_tls(postfix_mx_factory: Callable[..., PostfixMx]) -> None:
    mx = postfix_mx_factory(address="127.0.0.4", tls=True)
    assert mx.cert_path is not None
    context = ssl.create_default_context(cafile=str(mx.cert_path))
    context.check_hostname = False  # smtplib names the address; the chain is still checked
    with smtplib.SMTP(mx.address, mx.port, timeout=30) as smtp:
        smtp.ehlo("client.origin.test")
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=context)
        assert code == 220
        smtp.ehlo("client.origin.test")
        assert not smtp.has_extn("starttls")  # RFC 3207 §4.2: not offered twice
        smtp.sendmail("sender@origin.test", ["tls@remote.test"], MESSAGE)
    [raw] = mx.wait_for(1, timeout=30)
    assert b"(using TLS" in raw.partition(b"\n\n")[0]  # Postfix's Received header says so


# -- together: the MX found through DNS is the Postfix ------------------------------------


def test_the_mx_found_through_dns_receives_the_mail(
    dnsmasq_factory: Callable[..., Dnsmasq], remote: PostfixMx
) -> None:
    server = dnsmasq_factory(
        mx={"remote.test": [(10, "mx.remote.test")]}, a={"mx.remote.test": remote.address}
    )
    resolver = DnsResolver([server.address], port=server.port, timeout=1.0, lifetime=5.0)

    async def lookup() -> list[str]:
        result = await resolver.mx_hosts("remote.test")
        assert result.status is MxStatus.OK
        assert result.hosts == (MxHost("mx.remote.test", 10),)
        return await resolver.addresses("mx.remote.test")

    addresses = asyncio.run(asyncio.wait_for(lookup(), 20))
    assert addresses == [remote.address]
    before = len(remote.messages())
    with smtplib.SMTP(addresses[0], remote.port, timeout=30) as smtp:
        smtp.sendmail("sender@origin.test", ["via-dns@remote.test"], MESSAGE)
    remote.wait_for(before + 1, timeout=30)
