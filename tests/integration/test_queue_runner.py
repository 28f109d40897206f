"""The queue runner against a real store (SQLite on disk) and real SMTP servers on loopback,
with DNS answered from a table and the clock in the test's hands (RFC 5321 §4.5.4, §5.1;
RFC 3461; RFC 3464; RFC 7505)."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from mailwright.config.model import Config, OutboundConfig, QueueConfig, SmarthostConfig
from mailwright.dns.resolver import MxHost, MxResult, MxStatus, TemporaryDnsError
from mailwright.outbound.runner import Dsn, QueueRunner, retry_delay, wants
from mailwright.serve.tls import make_self_signed, server_context
from mailwright.store.api import MailEvent, Outbound, OutboundRecipient, QueueEntry
from mailwright.store.sqlite import SqliteStore
from tests.integration.test_outbound_client import Script, ScriptedServer

T = TypeVar("T")
NOW = 1_800_000_000
SENDER = "alice@example.test"


@dataclass
class TableResolver:
    """DNS from a table: domain → MX hosts; host → addresses. Missing: NXDOMAIN."""

    mx: dict[str, MxResult] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # hosts whose lookup fails for now

    async def mx_hosts(self, domain: str) -> MxResult:
        return self.mx.get(domain, MxResult(domain, MxStatus.NO_DOMAIN, reason="NXDOMAIN"))

    async def addresses(self, host: str) -> list[str]:
        if host in self.broken:
            raise TemporaryDnsError("SERVFAIL")
        return self.a.get(host, [])


def mx(domain: str, *hosts: str) -> MxResult:
    return MxResult(domain, MxStatus.OK, tuple(MxHost(h, 10 * i) for i, h in enumerate(hosts)))


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: SqliteStore
    runner: QueueRunner
    resolver: TableResolver
    clock: Clock
    dsns: list[Dsn]

    async def queue(
        self,
        *rcpts: str,
        sender: str = SENDER,
        notify: tuple[str, ...] = (),
        body: bytes = b"Subject: test\r\n\r\nhello\r\n",
        prefix: bytes = b"",
        qid: str = "Q1",
    ) -> None:
        blob = self.store.messages.new_blob()
        blob.write(body)
        out = Outbound(sender, tuple(OutboundRecipient(r, notify) for r in rcpts), prefix=prefix)
        await self.store.messages.deliver(blob, qid, int(self.clock.now), [], outbound=out)

    async def run(self) -> None:
        """One pass of the runner, to its end."""
        await self.runner.run_once()
        await self.runner.idle()

    async def entries(self) -> list[QueueEntry]:
        return await self.store.queue.list_queue()

    async def events(self, qid: str = "Q1") -> list[tuple[str, str]]:
        return [(e.type, e.recipient) for e in await self.store.queue.events(qid)]


def world_run(
    tmp_path: Path,
    body: Callable[[World, ScriptedServer], Awaitable[T]],
    script: Script | None = None,
    smarthost: bool = False,
    **queue: object,
) -> T:
    async def go() -> T:
        async with ScriptedServer(script or Script()) as server:
            store = await asyncio.to_thread(SqliteStore, tmp_path / "data")
            outbound = OutboundConfig(port=server.port, tls_policy="none")
            if smarthost:
                outbound = OutboundConfig(
                    smarthost=SmarthostConfig(
                        host="127.0.0.1",
                        port=server.port,
                        verify=False,
                        username="relay-user",
                        password="relay-secret",
                    )
                )
            config = Config(
                data_dir=str(tmp_path / "data"),
                hostname="mx.example.test",
                outbound=outbound,
                queue=QueueConfig(**queue),  # type: ignore[arg-type]
            )
            resolver = TableResolver(
                mx={"remote.test": mx("remote.test", "mx.remote.test")},
                a={"mx.remote.test": ["127.0.0.1"]},
            )
            clock = Clock()
            dsns: list[Dsn] = []

            async def notify(dsn: Dsn) -> None:
                dsns.append(dsn)

            runner = QueueRunner(
                queue=store.queue, resolver=resolver, config=config, notifier=notify, clock=clock
            )
            try:
                async with asyncio.timeout(60):
                    return await body(World(store, runner, resolver, clock, dsns), server)
            finally:
                await runner.stop(1)
                await store.close()

    return asyncio.run(go())


def dsn_report(dsn: Dsn) -> tuple[str, list[dict[str, str]]]:
    """The DSN's report-type and its per-recipient fields."""
    msg = email.message_from_bytes(dsn.data)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    groups = status.get_payload()
    assert isinstance(groups, list)
    return msg.get_param("report-type") or "", [dict(g.items()) for g in groups[1:]]


def test_delivered_with_its_prefix_and_settled(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test", "b@remote.test", prefix=b"DKIM-Signature: v=1\r\n")
        await w.run()
        assert await w.entries() == []
        (session,) = server.sessions
        assert session.messages == [b"DKIM-Signature: v=1\r\nSubject: test\r\n\r\nhello\r\n"]
        assert [c for c in session.commands if c.startswith("RCPT")] == [
            "RCPT TO:<a@remote.test>",
            "RCPT TO:<b@remote.test>",
        ]
        assert await w.events() == [
            ("delivered", "a@remote.test"),
            ("delivered", "b@remote.test"),
        ]
        detail = (await w.store.queue.events("Q1"))[0].detail
        assert detail["reply"].startswith("250") and "127.0.0.1" in detail["host"]
        assert w.dsns == []

    world_run(tmp_path, body)


def test_a_temporary_refusal_is_retried_on_schedule(tmp_path: Path) -> None:
    script = Script(rcpt={"busy@remote.test": b"451 4.3.0 try later\r\n"})

    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("busy@remote.test")
        await w.run()
        (entry,) = await w.entries()
        assert (entry.attempts, entry.next_attempt) == (1, NOW + 60)
        assert entry.last_reply.startswith("451 4.3.0")
        w.clock.now += 59
        await w.run()  # not due yet
        assert len(server.sessions) == 1
        w.clock.now += 1
        await w.run()
        (entry,) = await w.entries()
        assert (entry.attempts, entry.next_attempt) == (2, NOW + 60 + 300)
        script.rcpt.clear()  # the remote is happy now
        w.clock.now = entry.next_attempt
        await w.run()
        assert await w.entries() == []
        assert await w.events() == [
            ("deferred", "busy@remote.test"),
            ("deferred", "busy@remote.test"),
            ("delivered", "busy@remote.test"),
        ]
        assert w.dsns == []  # no delay warning before four hours

    world_run(tmp_path, body, script)


def test_a_permanent_refusal_bounces_with_a_dsn(tmp_path: Path) -> None:
    script = Script(rcpt={"nobody@remote.test": b"550 5.1.1 no such user\r\n"})

    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("nobody@remote.test", "ok@remote.test")
        await w.run()
        assert await w.entries() == []
        assert await w.events() == [
            ("bounced", "nobody@remote.test"),
            ("delivered", "ok@remote.test"),
        ]
        (dsn,) = w.dsns
        assert (dsn.to, dsn.queue_id) == (SENDER, "Q1")
        kind, recipients = dsn_report(dsn)
        assert kind == "delivery-status"
        (r,) = recipients
        assert r["Final-Recipient"] == "rfc822; nobody@remote.test"
        assert (r["Action"], r["Status"]) == ("failed", "5.1.1")
        assert "550 5.1.1 no such user" in r["Diagnostic-Code"]
        assert r["Remote-MTA"] == "dns; mx.remote.test"

    world_run(tmp_path, body, script)


def test_no_dsn_to_the_null_sender_or_when_notify_says_never(tmp_path: Path) -> None:
    script = Script(rcpt={"nobody@remote.test": b"550 5.1.1 no such user\r\n"})

    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("nobody@remote.test", sender="", qid="Q1")
        await w.queue("nobody@remote.test", notify=("NEVER",), qid="Q2")
        await w.run()
        assert await w.entries() == []
        assert w.dsns == []
        assert await w.events("Q2") == [("bounced", "nobody@remote.test")]

    world_run(tmp_path, body, script)


def test_notify_success_to_a_server_without_dsn_gets_relayed(tmp_path: Path) -> None:
    script = Script(extensions=["PIPELINING", "8BITMIME"])

    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test", notify=("SUCCESS",))
        await w.run()
        (dsn,) = w.dsns
        _, (r,) = dsn_report(dsn)
        assert (r["Action"], r["Status"]) == ("relayed", "2.0.0")

    world_run(tmp_path, body, script)


def test_the_next_mx_host_when_the_first_is_down(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        # Nothing listens on 127.0.0.3 at the server's port: connection refused.
        w.resolver.mx["remote.test"] = mx("remote.test", "down.remote.test", "mx.remote.test")
        w.resolver.a["down.remote.test"] = ["127.0.0.3"]
        await w.queue("a@remote.test")
        await w.run()
        assert await w.entries() == []
        (event,) = await w.store.queue.events("Q1")
        assert event.type == "delivered" and "mx.remote.test" in event.detail["host"]

    world_run(tmp_path, body)


def test_every_host_down_defers_with_the_reason(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        w.resolver.a["mx.remote.test"] = ["127.0.0.3"]
        await w.queue("a@remote.test")
        await w.run()
        (entry,) = await w.entries()
        assert entry.attempts == 1 and "127.0.0.3" in entry.last_reply
        assert entry.last_reply.startswith("421 4.4.1")

    world_run(tmp_path, body)


def test_null_mx_and_nxdomain_bounce_at_once_dns_trouble_defers(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        w.resolver.mx["nullmx.test"] = MxResult("nullmx.test", MxStatus.NULL_MX, reason="null MX")
        w.resolver.mx["flaky.test"] = MxResult("flaky.test", MxStatus.TEMPORARY, reason="timeout")
        w.resolver.mx["noaddr.test"] = mx("noaddr.test", "mx.noaddr.test")
        w.resolver.broken.add("mx.noaddr.test")
        await w.queue("a@nullmx.test", "b@nowhere.test", "c@flaky.test", "d@noaddr.test")
        await w.run()
        assert sorted(await w.events()) == [
            ("bounced", "a@nullmx.test"),
            ("bounced", "b@nowhere.test"),
            ("deferred", "c@flaky.test"),
            ("deferred", "d@noaddr.test"),
        ]
        statuses = sorted(r["Status"] for d in w.dsns for r in dsn_report(d)[1])
        assert statuses == ["5.1.10", "5.1.2"]
        flaky, noaddr = sorted(await w.entries(), key=lambda e: e.recipient)
        assert flaky.last_reply.startswith("451 4.4.3")
        assert noaddr.last_reply.startswith("451 4.4.3") and "SERVFAIL" in noaddr.last_reply
        assert server.sessions == []

    world_run(tmp_path, body)


def test_delay_warning_once_then_expiry_bounces(tmp_path: Path) -> None:
    script = Script(rcpt={"busy@remote.test": b"451 4.3.0 try later\r\n"})

    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("busy@remote.test")
        await w.run()
        assert w.dsns == []
        w.clock.now = NOW + 4 * 3600
        await w.run()
        (dsn,) = w.dsns
        _, (r,) = dsn_report(dsn)
        assert (r["Action"], r["Status"]) == ("delayed", "4.3.0")
        assert "Will-Retry-Until" in r
        w.clock.now = NOW + 5 * 3600
        await w.run()
        assert len(w.dsns) == 1  # warned once
        w.clock.now = NOW + 5 * 86400
        await w.run()
        assert await w.entries() == []
        assert len(w.dsns) == 2
        _, (r,) = dsn_report(w.dsns[1])
        assert (r["Action"], r["Status"]) == ("failed", "4.4.7")
        types = [t for t, _ in await w.events()]
        assert types == ["deferred", "deferred", "delayed", "deferred", "expired"]

    world_run(tmp_path, body, script)


def test_one_connection_carries_every_message_to_a_domain(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        for n in range(6):
            await w.queue(f"r{n}@remote.test", qid=f"Q{n}")
        await w.run()
        assert await w.entries() == []
        assert len(server.sessions) == 1
        assert len(server.sessions[0].messages) == 6

    world_run(tmp_path, body, max_per_destination=1)


@pytest.mark.parametrize(("cache_time", "sessions"), [(30.0, 1), (0.0, 2)])
def test_a_cached_session_carries_the_next_message(
    tmp_path: Path, cache_time: float, sessions: int
) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test", qid="Q1")
        await w.run()
        await w.queue("b@remote.test", qid="Q2")
        await w.run()
        assert await w.entries() == []
        assert len(server.sessions) == sessions
        assert sum(len(s.messages) for s in server.sessions) == 2

    world_run(tmp_path, body, connection_cache_time=cache_time)


def test_a_lapsed_lease_is_delivered_again(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test")
        # Another runner claimed it and died: nothing happens until the lease lapses.
        await w.store.queue.claim(NOW, 10, 600)
        await w.run()
        assert server.sessions == []
        w.clock.now += 600
        await w.run()
        assert await w.entries() == []

    world_run(tmp_path, body)


def test_an_operator_delete_during_delivery_is_no_error(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test")
        await w.store.queue.delete("Q1")
        await w.store.queue.add_events([MailEvent("Q1", "note")])
        await w.run()
        assert server.sessions == [] and await w.entries() == []

    world_run(tmp_path, body)


def test_smarthost_takes_everything_over_tls_with_auth(tmp_path: Path) -> None:
    make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "smarthost.test")
    script = Script(
        tls=server_context(tmp_path / "cert.pem", tmp_path / "key.pem"),
        credentials=("relay-user", "relay-secret"),
    )

    async def body(w: World, server: ScriptedServer) -> None:
        w.resolver.mx.clear()  # no DNS needed: everything goes to the smarthost
        await w.queue("a@remote.test", "b@elsewhere.test")
        await w.run()
        assert await w.entries() == []
        assert [(s.tls, s.auth) for s in server.sessions] == [
            (True, ("relay-user", "relay-secret")),
            (True, ("relay-user", "relay-secret")),
        ]  # one session per destination domain
        assert sorted(await w.events()) == [
            ("delivered", "a@remote.test"),
            ("delivered", "b@elsewhere.test"),
        ]

    world_run(tmp_path, body, script, smarthost=True)


def test_smarthost_without_tls_is_never_used_in_plaintext(tmp_path: Path) -> None:
    async def body(w: World, server: ScriptedServer) -> None:
        await w.queue("a@remote.test")
        await w.run()
        (entry,) = await w.entries()
        assert entry.last_reply.startswith("4") and "TLS" in entry.last_reply
        assert all(s.auth is None and not s.messages for s in server.sessions)

    world_run(tmp_path, body, smarthost=True)


def test_retry_schedule_and_notify_rules() -> None:
    schedule = (60.0, 300.0, 900.0)
    assert [retry_delay(schedule, n) for n in (0, 1, 2, 3, 4, 99)] == [
        60.0,
        60.0,
        300.0,
        900.0,
        900.0,
        900.0,
    ]

    def entry(sender: str, notify: tuple[str, ...]) -> QueueEntry:
        return QueueEntry(
            1, "Q", 1, sender, "r@x.test", "x.test", notify, None, None, None,
            False, False, b"", 1, NOW, NOW, 0, "", False,
        )  # fmt: skip

    assert wants(entry("a@b.test", ()), "FAILURE") and wants(entry("a@b.test", ()), "DELAY")
    assert not wants(entry("a@b.test", ()), "SUCCESS")
    assert not wants(entry("", ()), "FAILURE")
    assert not wants(entry("a@b.test", ("NEVER",)), "FAILURE")
    assert wants(entry("a@b.test", ("SUCCESS",)), "SUCCESS")
    assert not wants(entry("a@b.test", ("SUCCESS",)), "FAILURE")
