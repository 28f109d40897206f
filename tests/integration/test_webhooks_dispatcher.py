"""The webhook dispatcher end to end, without the server: a real SQLite store, API sends
recorded as the HTTP API records them, and real local HTTP receivers (stdlib
``ThreadingHTTPServer`` on 127.0.0.1) that check every signature with ``verify``.

Cases: events arrive signed, in order, once; a receiver answering 500 gets the same
events again until it answers 2xx; one that is down gets everything once it is up; a 3xx
is a failure (never followed); the types filter and the domain restriction; a slow
receiver holds up nobody else; a backlog goes out in batches, in order."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mailwright.api.views import expand
from mailwright.api.webhooks import USER_AGENT, WebhookDispatcher, verify
from mailwright.store.api import INBOX, ApiSend, EventQuery, MailEvent, Target, Webhook
from mailwright.store.sqlite import SqliteStore

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"  # shape only; never verified here
WAIT = 4.0  # seconds: the longest any condition here may take
_qids = iter(range(1, 1_000_000))


@dataclass
class Post:
    webhook: int
    events: list[dict[str, Any]]
    signed: bool
    status: int
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook receiver: verifies, records, answers from ``statuses`` (then 200)."""

    secrets: dict[int, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    hold: threading.Event | None = None  # when set up, answers only once it is set
    location: str = ""  # sent with a 3xx
    posts: list[Post] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answered(self, webhook: int, status: int = 200) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.webhook == webhook and p.status == status]

    def events(self, webhook: int) -> list[dict[str, Any]]:
        """The events of every 2xx-answered POST to ``webhook``, in order."""
        return [e for p in self.answered(webhook) for e in p.events]

    def all_posts(self) -> list[Post]:
        with self.lock:
            return list(self.posts)


# The receivers listen on loopback, which webhooks reach only when the operator allows it.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            webhook = int(self.headers["Mailwright-Webhook-Id"])
            signed = verify(
                receiver.secrets.get(webhook, ""),
                self.headers["Mailwright-Timestamp"],
                body,
                self.headers["Mailwright-Signature"],
                now=time.time(),
            )
            if receiver.hold is not None:
                receiver.hold.wait(WAIT)
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.posts.append(
                    Post(webhook, json.loads(body), signed, status, dict(self.headers))
                )
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            answer = b"oops: not now\r\n" if status >= 300 else b"ok"
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test's assertions say what matters

    return Handler


@contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def closed_port() -> int:
    """A loopback port nobody listens on (the kernel just handed it out and it is free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, for at most ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def scenario(tmp_path: Path, body: Callable[[SqliteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = await asyncio.to_thread(SqliteStore, tmp_path / "data")
        try:
            for domain in ("example.test", "other.test"):
                await store.accounts.add_domain(domain)
                await store.accounts.add_account(f"bob@{domain}", HASH)
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


@asynccontextmanager
async def running(store: SqliteStore, **settings: Any) -> AsyncIterator[WebhookDispatcher]:
    options: dict[str, Any] = {
        "poll_interval": 0.05,
        "retry_schedule": (0.05, 0.1),
        "timeout": 2,
        "allowed_networks": LOOPBACK,
    }
    options.update(settings)
    dispatcher = WebhookDispatcher(store.webhooks, store.api, **options)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(1.0)


async def register(
    store: SqliteStore,
    receiver: Receiver,
    types: tuple[str, ...] = (),
    domain: str | None = None,
    url: str = "",
) -> Webhook:
    n = len(receiver.secrets)
    secret = f"whsec_test{n}"
    hook = await store.webhooks.create_webhook(url or receiver.url(), secret, types, domain)
    receiver.secrets[hook.id] = secret
    return hook


async def send(store: SqliteStore, domain: str = "example.test") -> str:
    """A message sent through the API from ``domain``: filed for bob@``domain`` and queued
    for a remote recipient, with the events the pipeline records."""
    qid = f"W{next(_qids):013d}"
    bob = await store.accounts.get_account(f"bob@{domain}")
    assert bob is not None
    blob = store.messages.new_blob()
    blob.write(b"From: a@" + domain.encode() + b"\r\nSubject: hi\r\n\r\nhi\r\n")
    await store.messages.deliver(
        blob,
        qid,
        int(time.time()),
        [Target(bob.id, INBOX)],
        events=[
            MailEvent(qid, "received", detail={"delivered": f"bob@{domain}"}),
            MailEvent(qid, "queued", "carol@remote.test"),
        ],
        send=ApiSend(1, domain),
    )
    return qid


async def expected(
    store: SqliteStore, after: int, domain: str | None = None
) -> list[dict[str, Any]]:
    """Every API event after ``after`` as the webhook should show it, in order."""
    rows = await store.api.query_events(EventQuery(after=after, limit=1000, sender_domain=domain))
    return [e.model_dump() for row in rows for e in expand(row)]


async def state(store: SqliteStore, hook: Webhook) -> Webhook:
    got = await store.webhooks.get_webhook(hook.id)
    assert got is not None
    return got


def test_events_of_sent_messages_arrive_signed_in_order_and_once(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await send(store)  # before the webhook existed: not sent to it
        with serving(Receiver()) as receiver:
            hook = await register(store, receiver)
            # A long poll: only the wake-up makes it look.
            async with running(store, poll_interval=30) as dispatcher:
                first, second = await send(store), await send(store)
                dispatcher.wake()
                want = await expected(store, hook.cursor)
                await until(lambda: receiver.events(hook.id) == want, "the events")
                head = await store.webhooks.last_event_id()
                await until(lambda: _cursor_is(store, hook, head), "the cursor to move")
                await dispatcher.idle()
                # Caught up: nothing is due, so nothing is sent again.
                assert await dispatcher.run_once() == 0
        got = receiver.events(hook.id)
        assert [(e["type"], e["message"], e["recipient"]) for e in got] == [
            ("accepted", first, None),
            ("delivered", first, "bob@example.test"),
            ("queued", first, "carol@remote.test"),
            ("accepted", second, None),
            ("delivered", second, "bob@example.test"),
            ("queued", second, "carol@remote.test"),
        ]
        posts = receiver.all_posts()
        assert posts and all(p.signed and p.status == 200 for p in posts)
        headers = posts[0].headers
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == USER_AGENT
        assert headers["Mailwright-Signature"].startswith("v1=")
        final = await state(store, hook)
        assert (final.attempts, final.last_error, final.lease_until) == (0, "", 0)
        assert final.last_success is not None

    scenario(tmp_path, body)


async def _cursor_is(store: SqliteStore, hook: Webhook, cursor: int) -> bool:
    return (await state(store, hook)).cursor == cursor


def test_a_failing_receiver_gets_the_same_events_until_it_answers_2xx(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver(statuses=[500, 500])) as receiver:
            hook = await register(store, receiver)
            async with running(store):
                await send(store)
                want = await expected(store, hook.cursor)
                await until(lambda: receiver.events(hook.id) == want, "a 2xx")
                await until(lambda: _cursor_is(store, hook, int(want[-1]["id"])), "the settle")
        posts = receiver.all_posts()
        assert [p.status for p in posts] == [500, 500, 200]
        # The very same events each time, in the same order: nothing lost or reordered.
        assert all(p.events == want and p.signed for p in posts)
        final = await state(store, hook)
        assert (final.attempts, final.last_error) == (0, "")
        assert final.last_success is not None

    scenario(tmp_path, body)


def test_a_receiver_that_keeps_failing_is_retried_and_holds_up_nobody(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver(statuses=[503] * 1000)) as failing, serving(Receiver()) as fine:
            bad = await register(store, failing)
            good = await register(store, fine)
            async with running(store):
                await send(store)
                want = await expected(store, good.cursor)
                await until(lambda: fine.events(good.id) == want, "the healthy receiver")

                async def retried() -> bool:
                    return (await state(store, bad)).attempts >= 3

                await until(retried, "three failed attempts")
        failed = await state(store, bad)
        assert failed.cursor == bad.cursor  # still before the events it did not get
        assert failed.last_error == "HTTP 503 oops: not now"
        assert failed.next_attempt > 0 and failed.last_success is None
        assert all(p.events == want for p in failing.all_posts())

    scenario(tmp_path, body)


def test_a_receiver_that_is_down_gets_everything_once_it_is_up(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        receiver = Receiver(port=closed_port())
        hook = await register(store, receiver)
        async with running(store):
            await send(store)

            async def refused() -> bool:
                return (await state(store, hook)).attempts >= 2

            await until(refused, "failed attempts while it is down")
            assert "refused" in (await state(store, hook)).last_error.lower()
            await send(store)
            want = await expected(store, hook.cursor)
            with serving(receiver):
                await until(lambda: receiver.events(hook.id) == want, "the events once up")
                await until(lambda: _cursor_is(store, hook, int(want[-1]["id"])), "the settle")
        assert all(p.signed for p in receiver.all_posts())
        assert (await state(store, hook)).attempts == 0

    scenario(tmp_path, body)


def test_a_redirect_is_a_failure_and_is_not_followed(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver()) as elsewhere:
            redirecting = Receiver(statuses=[302] * 1000, location=elsewhere.url())
            with serving(redirecting):
                hook = await register(store, redirecting)
                async with running(store):
                    await send(store)

                    async def failed() -> bool:
                        return (await state(store, hook)).attempts >= 1

                    await until(failed, "the 302 to count as a failure")
        assert (await state(store, hook)).last_error.startswith("HTTP 302")
        assert elsewhere.all_posts() == []

    scenario(tmp_path, body)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_an_address_webhooks_may_not_reach_is_a_failure_and_gets_nothing(
    tmp_path: Path, host: str
) -> None:
    # Loopback without webhooks.allowed_networks: the server's own host is off limits to
    # whoever holds an API key, however the URL names it.
    async def body(store: SqliteStore) -> None:
        with serving(Receiver()) as receiver:
            url = receiver.url().replace("127.0.0.1", host)
            hook = await register(store, receiver, url=url)
            async with running(store, allowed_networks=()):
                await send(store)

                async def failed() -> bool:
                    return (await state(store, hook)).attempts >= 1

                await until(failed, "the refused address to count as a failure")
            error = (await state(store, hook)).last_error
        assert "may not reach" in error and "webhooks.allowed_networks" in error
        assert receiver.all_posts() == []

    scenario(tmp_path, body)


def test_types_filter_and_a_cursor_that_moves_past_unwanted_events(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver()) as receiver:
            delivered = await register(store, receiver, ("delivered",))
            bounced = await register(store, receiver, ("bounced",))
            everything = await register(store, receiver)
            async with running(store):
                await send(store)
                await send(store)
                want = await expected(store, everything.cursor)
                only = [e for e in want if e["type"] == "delivered"]
                await until(lambda: receiver.events(everything.id) == want, "every event")
                await until(lambda: receiver.events(delivered.id) == only, "the delivered ones")
                head = await store.webhooks.last_event_id()
                # Nothing it wants: no POST, but its cursor still moves on.
                await until(lambda: _cursor_is(store, bounced, head), "the unwanted skipped")
        assert len(only) == 2
        assert not [p for p in receiver.all_posts() if p.webhook == bounced.id]

    scenario(tmp_path, body)


def test_a_domain_restricted_webhook_gets_only_its_domain(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver()) as receiver:
            other = await register(store, receiver, domain="other.test")
            everyone = await register(store, receiver)
            async with running(store):
                await send(store)
                theirs = await send(store, "other.test")
                await send(store)
                want = await expected(store, other.cursor, "other.test")
                want_all = await expected(store, everyone.cursor)
                await until(lambda: receiver.events(other.id) == want, "other.test's events")
                await until(lambda: receiver.events(everyone.id) == want_all, "every event")
                head = await store.webhooks.last_event_id()
                await until(lambda: _cursor_is(store, other, head), "the rest skipped")
        assert {e["message"] for e in want} == {theirs} and len(want) == 3
        assert len(want_all) == 9

    scenario(tmp_path, body)


def test_a_slow_receiver_holds_up_no_other(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        hold = threading.Event()
        with serving(Receiver(hold=hold)) as slow, serving(Receiver()) as fast:
            held = await register(store, slow)
            quick = await register(store, fast)
            try:
                async with running(store):
                    await send(store)
                    want = await expected(store, quick.cursor)
                    await until(lambda: fast.events(quick.id) == want, "the fast receiver")
                    assert slow.all_posts() == []  # its POST is still waiting for an answer
                    hold.set()
                    await until(lambda: slow.events(held.id) == want, "the slow receiver")
            finally:
                hold.set()

    scenario(tmp_path, body)


def test_a_backlog_goes_out_in_batches_in_order(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with serving(Receiver()) as receiver:
            hook = await register(store, receiver)
            for _ in range(5):
                await send(store)  # 10 event rows, 15 events
            want = await expected(store, hook.cursor)
            # A long poll: a full batch makes it look again at once.
            async with running(store, batch=3, poll_interval=30):
                await until(lambda: receiver.events(hook.id) == want, "the backlog")
        posts = receiver.all_posts()
        rows = [{e["id"].split(".")[0] for e in p.events} for p in posts]
        assert [len(r) for r in rows] == [3, 3, 3, 1]

    scenario(tmp_path, body)


def test_stop_does_not_wait_beyond_its_grace_for_a_receiver(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        hold = threading.Event()
        with serving(Receiver(hold=hold)) as slow:
            hook = await register(store, slow)
            dispatcher = WebhookDispatcher(
                store.webhooks, store.api, poll_interval=0.05, allowed_networks=LOOPBACK
            )
            dispatcher.start()
            try:
                await send(store)

                async def claimed() -> bool:
                    return (await state(store, hook)).lease_until > 0

                await until(claimed, "the claim")
                started = time.monotonic()
                await dispatcher.stop(0.2)
                assert time.monotonic() - started < 2
            finally:
                hold.set()
                await dispatcher.stop(0)
        # Stopped mid-POST: the events were not settled, so they go out again later.
        assert (await state(store, hook)).cursor == hook.cursor

    scenario(tmp_path, body)
