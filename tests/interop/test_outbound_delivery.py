"""Submission to delivery by MX with real parts: mailwright serving, dnsmasq answering MX, A
and TXT for the test domains, and Postfix as the remote MX on another loopback address
(RFC 6409, RFC 5321 §5.1 and §4.5.4, RFC 3464, RFC 6376, RFC 7505).

Retries are a second apart here (``queue.retry_schedule = [1]``), so "later" is soon."""

from __future__ import annotations

import email
import json
import smtplib
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailwright.message.dkim import dns_record, verify
from mailwright.store.dkimkeys import DkimKeyStore
from tests.integration.server import Server, mailwright
from tests.interop.dnsmasq import Dnsmasq
from tests.interop.postfix_mx import PostfixMx

SENDER = "alice@example.test"
WAIT = 60.0


@dataclass
class Setup:
    server: Server
    mx: PostfixMx
    dns: Dnsmasq
    txt: dict[str, str]

    def submit(self, rcpts: list[str], subject: str = "hello", **kw: object) -> None:
        body = (
            f"From: Alice <{SENDER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\n"
            "Hello from mailwright.\r\n"
        ).encode()
        with smtplib.SMTP(self.server.host, self.server.submission_port, timeout=30) as smtp:
            smtp.login(SENDER, "secret")
            assert smtp.sendmail(SENDER, rcpts, body, **kw) == {}  # type: ignore[arg-type]

    def events(self) -> list[tuple[str, str, str]]:
        with sqlite3.connect(self.server.data_dir / "mailwright.db") as db:
            return db.execute("SELECT queue_id, type, recipient FROM events ORDER BY id").fetchall()

    def wait_event(self, kind: str, rcpt: str, count: int = 1) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if sum(1 for _, t, r in self.events() if (t, r) == (kind, rcpt)) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"no {kind} event for {rcpt}: {self.events()}")

    def wait_inbox(self, address: str, count: int = 1) -> list[bytes]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            got = self.server.inbox(address)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{address} has {len(self.server.inbox(address))} messages")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with PostfixMx(domains=("remote.test",), address="127.0.0.2") as mx:
        server = Server.create(tmp_path / "mw", users=(SENDER,))
        keys = DkimKeyStore(server.data_dir).keys("example.test")
        assert {k.algorithm for k in keys} == {"rsa-sha256", "ed25519-sha256"}
        txt = {
            f"{k.selector}._domainkey.example.test": dns_record(k.private_key, k.algorithm)
            for k in keys
        }
        with Dnsmasq(
            mx={"remote.test": [(10, "mx.remote.test")], "down.test": [(10, "mx.down.test")]},
            a={"mx.remote.test": mx.address, "mx.down.test": "127.0.0.3"},
            txt=txt,
            null_mx=["nullmx.test"],
        ) as dns:
            server.env_overrides.update(
                {
                    "MAILWRIGHT_DNS__NAMESERVERS": f'["{dns.address}"]',
                    "MAILWRIGHT_DNS__PORT": str(dns.port),
                    "MAILWRIGHT_OUTBOUND__PORT": str(mx.port),
                    "MAILWRIGHT_QUEUE__RETRY_SCHEDULE": "[1]",
                    "MAILWRIGHT_QUEUE__POLL_INTERVAL": "0.5",
                }
            )
            server.start()
            try:
                yield Setup(server, mx, dns, txt)
            finally:
                if server.proc is not None:
                    server.stop(timeout=30)


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_delivered_by_mx_with_a_dkim_signature_that_verifies(setup: Setup) -> None:
    setup.submit(["bob@remote.test", "carol@remote.test"])
    got = setup.mx.wait_for(2, timeout=WAIT)
    for raw in got:
        message = crlf(raw)
        assert message.count(b"DKIM-Signature:") == 2  # RSA and Ed25519 (RFC 8463)
        assert verify(message, setup.txt.get)
        assert b"\r\nMessage-ID: <" in message and b"\r\nDate: " in message
        assert b"Hello from mailwright." in message
    setup.wait_event("delivered", "bob@remote.test")
    with sqlite3.connect(setup.server.data_dir / "mailwright.db") as db:
        assert db.execute("SELECT count(*) FROM queue").fetchone() == (0,)
    qid = setup.events()[0][0]
    history = mailwright("history", qid, config=setup.server.config)
    for word in ("received", "queued", "delivered", "mx.remote.test"):
        assert word in history


def test_a_451_is_retried_until_delivered(setup: Setup) -> None:
    setup.mx.set_reply("busy@remote.test", "451 4.3.0 Try again later")
    setup.submit(["busy@remote.test"])
    setup.wait_event("deferred", "busy@remote.test", count=2)
    listing = mailwright("queue", "list", config=setup.server.config)
    assert "busy@remote.test" in listing and "451 4.3.0" in listing
    setup.mx.set_reply("busy@remote.test", None)
    [message] = setup.mx.wait_for(1, timeout=WAIT)
    assert b"Hello from mailwright." in message
    setup.wait_event("delivered", "busy@remote.test")
    assert setup.server.inbox(SENDER) == []  # no bounce, no warning


def test_a_550_bounces_to_the_senders_inbox(setup: Setup) -> None:
    setup.mx.set_reply("nobody@remote.test", "550 5.1.1 No such user here")
    setup.submit(["nobody@remote.test"], subject="to nobody")
    [dsn] = setup.wait_inbox(SENDER)
    msg = email.message_from_bytes(dsn)
    assert msg.get_content_type() == "multipart/report"
    assert msg["From"].startswith("Mail Delivery System")
    report = dsn.decode("utf-8", "replace")
    assert "Final-Recipient: rfc822; nobody@remote.test" in report
    assert "Action: failed" in report and "Status: 5.1.1" in report
    assert "No such user here" in report
    assert "Subject: to nobody" in report  # the original comes back
    assert b"Return-Path: <>" in dsn  # from the null sender (RFC 3461 §6.2)
    setup.wait_event("bounced", "nobody@remote.test")


def test_remote_down_then_back(setup: Setup) -> None:
    setup.mx.stop()
    setup.submit(["bob@remote.test"])
    setup.wait_event("deferred", "bob@remote.test", count=2)
    setup.mx.start()
    [message] = setup.mx.wait_for(1, timeout=WAIT)
    assert b"Hello from mailwright." in message


def test_null_mx_bounces_at_once(setup: Setup) -> None:
    setup.submit(["someone@nullmx.test"])
    [dsn] = setup.wait_inbox(SENDER)
    assert b"Status: 5.1.10" in dsn
    assert ("bounced", "someone@nullmx.test") in [(t, r) for _, t, r in setup.events()]


def test_sigkill_mid_queue_loses_nothing(setup: Setup) -> None:
    setup.mx.stop()
    for n in range(20):
        setup.submit([f"r{n}@remote.test"], subject=f"message {n}")
    setup.server.kill()
    setup.mx.start()
    setup.server.start()
    got = setup.mx.wait_for(20, timeout=WAIT)
    subjects = sorted(
        line for raw in got for line in raw.split(b"\n") if line.startswith(b"Subject: message")
    )
    assert subjects == sorted(f"Subject: message {n}".encode() for n in range(20))


def test_an_api_send_is_delivered_by_mx_and_a_hard_bounce_suppresses(setup: Setup) -> None:
    """The HTTP API's messages take the same road: delivered (event with Postfix's reply),
    and a 550 is a "bounced" event with the remote reply that puts the address on the
    suppression list, so the next send to it is dropped."""
    setup.mx.set_reply("gone@remote.test", "550 5.1.1 No such user here")
    key = mailwright(
        "apikey", "create", "--scope", "send", "--scope", "read", config=setup.server.config
    ).splitlines()[0]
    base = f"http://127.0.0.1:{setup.server.http_port}"

    def call(method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, out = call(
        "POST",
        "/v1/messages",
        {
            "from": SENDER,
            "to": ["bob@remote.test", "gone@remote.test"],
            "subject": "by http",
            "text": "Hello over HTTP.",
        },
    )
    assert status == 202, out
    [raw] = setup.mx.wait_for(1, timeout=WAIT)
    message = crlf(raw)
    assert b"Subject: by http" in message and verify(message, setup.txt.get)
    setup.wait_event("bounced", "gone@remote.test")
    setup.wait_event("delivered", "bob@remote.test")
    status, state = call("GET", f"/v1/messages/{out['id']}")
    by_rcpt = {r["email"]: r for r in state["recipients"]}
    assert by_rcpt["bob@remote.test"]["status"] == "delivered"
    bounced = by_rcpt["gone@remote.test"]
    assert bounced["status"] == "bounced"
    assert "550 5.1.1" in bounced["events"][-1]["detail"]["reply"]
    _, listed = call("GET", "/v1/suppressions")
    assert [(s["address"], s["reason"]) for s in listed["data"]] == [("gone@remote.test", "bounce")]
    status, again = call(
        "POST",
        "/v1/messages",
        {"from": SENDER, "to": ["gone@remote.test"], "subject": "again", "text": "x"},
    )
    assert status == 202 and [r["status"] for r in again["recipients"]] == ["dropped"]
