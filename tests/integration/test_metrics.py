"""/metrics on a running server: whichever worker answers a scrape, it reports the whole
server (every worker's counts summed); a worker killed with SIGKILL takes its open
connections out of the gauges and leaves its counts in the totals."""

from __future__ import annotations

import contextlib
import http.client
import imaplib
import json
import os
import signal
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import Server, mailwright, worker_of, worker_pids

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="finds the answering worker in Linux /proc"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WORKERS = 3
SENT = 4  # messages sent by SMTP, one session each
DEADLINE = 30.0  # seconds any wait below may take
MESSAGE = b"Subject: counted\r\n\r\nHello.\r\n"


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(server: Server) -> tuple[Samples, int]:
    """One GET /metrics on a new connection: what it said, and which worker said it."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
        assert conn.sock is not None  # HTTP/1.1 keep-alive: the connection is still open
        worker = worker_of(server, server.http_port, conn.sock)
    finally:
        conn.close()
    found: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found, worker


def scrape_until(server: Server, done: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + DEADLINE
    while True:
        found, _worker = scrape(server)
        if done(found):
            return found
        assert time.monotonic() < deadline, f"no scrape showed {what} in time"
        time.sleep(0.05)


def request(server: Server, method: str, path: str, body: object = None, key: str = "") -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method
    )
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def send_by_smtp(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.sendmail("someone@remote.test", ["alice@example.test"], MESSAGE)


def wait_for_workers(server: Server, gone: int | None = None) -> set[int]:
    deadline = time.monotonic() + DEADLINE
    while True:
        now = worker_pids(server)
        if len(now) == WORKERS and gone not in now:
            return now
        assert time.monotonic() < deadline, f"workers: {now}"
        time.sleep(0.05)


def stop(server: Server) -> None:
    """A clean stop, or SIGKILL when that fails: never left running."""
    if server.proc is None:
        return
    try:
        server.stop(timeout=30)
    except Exception:
        server.kill()
        raise


def totals(found: Samples) -> tuple[float, ...]:
    """Counters nothing changes while the test only scrapes."""
    return (
        value(found, "mailwright_messages_total", event="received"),
        value(found, "mailwright_messages_total", event="delivered"),
        value(found, "mailwright_auth_failures_total", protocol="imap"),
        value(found, "mailwright_auth_failures_total", protocol="http"),
        value(found, "mailwright_connections_total", protocol="smtp"),
        value(found, "mailwright_smtp_transaction_seconds_count"),
    )


def test_any_worker_reports_every_worker_and_a_killed_one_keeps_its_counts(
    tmp_path: Path,
) -> None:
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS=str(WORKERS)).start()
    try:
        wait_for_workers(server)
        key = mailwright("apikey", "create", config=server.config).splitlines()[0].strip()
        for _ in range(SENT):
            send_by_smtp(server)
        imap = imaplib.IMAP4(server.host, server.imap_port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.test", "wrong password")
        imap.logout()
        assert request(server, "GET", "/v1/usage") == 401  # no key
        assert request(server, "GET", "/v1/usage", key="mw_not-a-key") == 401
        queued = {
            "from": "alice@example.test",
            "to": ["someone@remote.test"],
            "subject": "queued",
            "text": "For the queue.\n",
        }
        assert request(server, "POST", "/v1/messages", queued, key=key) == 202

        def complete(found: Samples) -> bool:
            # Another worker's counts may lag a scrape by up to meter.FLUSH_SECONDS: wait
            # until every count this test made shows (then check each exactly).
            requests = "mailwright_http_requests_total"
            return (
                value(found, requests, method="GET", status="401") >= 2
                and value(found, requests, method="POST", status="202") >= 1
                and value(found, "mailwright_messages_total", event="received") >= SENT + 1
                and value(found, "mailwright_messages_total", event="delivered") >= SENT
                and value(found, "mailwright_auth_failures_total", protocol="imap") >= 1
                and value(found, "mailwright_connections_total", protocol="smtp") >= SENT
                and value(found, "mailwright_smtp_transaction_seconds_count") >= SENT
            )

        first = scrape_until(server, complete, "every count made")
        assert value(first, "mailwright_messages_total", event="received") == SENT + 1
        assert value(first, "mailwright_messages_total", event="delivered") == SENT
        assert value(first, "mailwright_auth_failures_total", protocol="imap") == 1
        assert value(first, "mailwright_auth_failures_total", protocol="http") == 1
        assert value(first, "mailwright_connections_total", protocol="smtp") == SENT
        assert value(first, "mailwright_connections_total", protocol="imap") >= 1
        assert value(first, "mailwright_smtp_transaction_seconds_count") == SENT
        assert value(first, "mailwright_queue_depth") == 1
        assert value(first, "mailwright_queue_oldest_age_seconds") >= 0
        assert value(first, "mailwright_http_request_seconds_count") >= 3

        # Scrapes answered by different workers report the same totals.
        by_worker: dict[int, Samples] = {}
        deadline = time.monotonic() + DEADLINE
        while len(by_worker) < 2:
            assert time.monotonic() < deadline, "every scrape was answered by one worker"
            found, worker = scrape(server)
            by_worker[worker] = found
        assert {totals(found) for found in by_worker.values()} == {totals(first)}

        # The queue runner counts per recipient as it settles (no DNS answers here).
        scrape_until(
            server,
            lambda f: value(f, "mailwright_messages_total", event="deferred") >= 1,
            "the deferral",
        )

        # A worker holding an IMAP session dies: the session leaves the gauge (at once, not
        # at some timeout), the counts of that worker stay in the totals.
        held = imaplib.IMAP4(server.host, server.imap_port, timeout=10)
        victim = worker_of(server, server.imap_port, held.sock)
        before = scrape_until(
            server,
            lambda f: value(f, "mailwright_connections_open", protocol="imap") == 1,
            "the IMAP session open",
        )
        os.kill(victim, signal.SIGKILL)
        wait_for_workers(server, gone=victim)
        after = scrape_until(
            server,
            lambda f: value(f, "mailwright_connections_open", protocol="imap") == 0,
            "the dead worker's IMAP session gone",
        )
        assert totals(after) == totals(before)
        with contextlib.suppress(OSError, imaplib.IMAP4.abort):
            held.shutdown()
        send_by_smtp(server)  # and the replacement counts on from there
        # (Within meter.FLUSH_SECONDS, whichever worker answers the scrape.)
        scrape_until(
            server,
            lambda f: value(f, "mailwright_messages_total", event="received") == SENT + 2,
            "the new message counted",
        )
        assert "worker.died" in server.log()
    finally:
        stop(server)


def test_one_process_serves_metrics_and_starts_from_zero(tmp_path: Path) -> None:
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS="1").start()
    try:
        send_by_smtp(server)
        found = scrape_until(
            server,
            lambda f: value(f, "mailwright_messages_total", event="received") == 1,
            "the message",
        )
        assert value(found, "mailwright_connections_total", protocol="smtp") == 1
        assert value(found, "mailwright_connections_open", protocol="smtp") == 0
        assert value(found, "mailwright_queue_depth") == 0
        assert list((tmp_path / "mw" / "run" / "metrics").glob("counter_*.db"))
        assert request(server, "GET", "/openapi.json") == 200
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.http_port}/openapi.json", timeout=10
        ) as response:
            assert "/metrics" not in json.loads(response.read())["paths"]
    finally:
        stop(server)
    server.start()  # a new run counts from zero: the last run's files are gone
    try:
        found, _worker = scrape(server)
        assert value(found, "mailwright_messages_total", event="received") == 0
        assert value(found, "mailwright_connections_total", protocol="smtp") == 0
    finally:
        stop(server)


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    server = Server.create(
        tmp_path / "mw", MAILWRIGHT_WORKERS="1", MAILWRIGHT_HTTP__METRICS="false"
    ).start()
    try:
        assert request(server, "GET", "/metrics") == 404
        assert request(server, "GET", "/v1/usage") == 401  # the API serves on
    finally:
        stop(server)
