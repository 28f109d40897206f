"""The metrics (metrics/meter.py): counting in memory, and across processes in a shared
directory (prometheus_client's multiprocess mode), as the server's workers do.

Everything that points metrics at a directory runs in a forked child, so this test
process (and the servers other tests start from it) never inherits that setting.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailwright.metrics import meter

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEADLINE = 20.0  # seconds a child process may take


def samples(text: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def in_child(directory: Path, work: Callable[[], object]) -> tuple[object, int]:
    """Run ``work`` in a forked process counting into ``directory``: (its result, its pid)."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def main() -> None:
        try:
            meter.use_directory(directory)
            sender.send(("ok", work()))
        except BaseException:
            sender.send(("error", traceback.format_exc()))

    process = ctx.Process(target=main)
    process.start()
    try:
        assert receiver.poll(DEADLINE), "the child did not answer in time"
        kind, result = receiver.recv()
        process.join(DEADLINE)
        assert process.exitcode == 0, process.exitcode
    finally:
        if process.is_alive():
            process.kill()
            process.join(DEADLINE)
        receiver.close()
        sender.close()
    assert kind == "ok", result
    assert process.pid is not None
    return result, process.pid


def scrape(directory: Path, queue: meter.QueueFacts | None = None) -> Samples:
    text, _pid = in_child(directory, lambda: meter.exposition(queue))
    assert isinstance(text, bytes)
    return samples(text)


# -- in memory (no directory) ----------------------------------------------------------


def test_without_a_directory_the_counts_stay_in_memory_and_are_scraped_from_there() -> None:
    before = samples(meter.exposition())
    meter.connection_accepted("smtp")
    meter.connection_opened("smtp")
    meter.messages("received", 2)
    meter.messages("delivered", 0)  # nothing to count
    meter.auth_failed("imap")
    meter.http_request("get", 401, 0.002)
    meter.http_request("BREW", 418, 0.002)  # an invented method is one label value
    meter.smtp_transaction(0.004)
    after = samples(meter.exposition())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mailwright_connections_total", protocol="smtp") == 1
    assert delta("mailwright_connections_open", protocol="smtp") == 1
    assert delta("mailwright_messages_total", event="received") == 2
    assert delta("mailwright_messages_total", event="delivered") == 0
    assert delta("mailwright_auth_failures_total", protocol="imap") == 1
    assert delta("mailwright_http_requests_total", method="GET", status="401") == 1
    assert delta("mailwright_http_requests_total", method="other", status="418") == 1
    assert delta("mailwright_http_request_seconds_count") == 2
    assert delta("mailwright_smtp_transaction_seconds_count") == 1
    assert delta("mailwright_smtp_transaction_seconds_bucket", le="0.005") == 1
    meter.connection_closed("smtp")
    assert value(samples(meter.exposition()), "mailwright_connections_open", protocol="smtp") == (
        value(before, "mailwright_connections_open", protocol="smtp")
    )


def test_every_known_series_exists_at_zero_before_anything_is_counted(tmp_path: Path) -> None:
    meter.prepare_directory(tmp_path)
    found = scrape(tmp_path)
    for protocol in meter.CONNECTION_PROTOCOLS:
        assert ("mailwright_connections_total", frozenset({("protocol", protocol)})) in found
        assert value(found, "mailwright_connections_open", protocol=protocol) == 0
    for event in meter.MESSAGE_EVENTS:
        assert ("mailwright_messages_total", frozenset({("event", event)})) in found
    for protocol in meter.AUTH_PROTOCOLS:
        assert ("mailwright_auth_failures_total", frozenset({("protocol", protocol)})) in found


def test_the_queue_facts_are_gauges_of_the_scrape() -> None:
    found = samples(meter.exposition(meter.QueueFacts(depth=3, oldest_age=12.5)))
    assert value(found, "mailwright_queue_depth") == 3
    assert value(found, "mailwright_queue_oldest_age_seconds") == 12.5
    assert ("mailwright_queue_depth", frozenset()) not in samples(meter.exposition())


# -- across processes ------------------------------------------------------------------


def _worker(received: int, protocol: str) -> Callable[[], None]:
    def work() -> None:
        meter.messages("received", received)
        meter.messages("deferred")
        meter.connection_accepted(protocol)
        meter.connection_opened(protocol)
        meter.auth_failed(protocol)
        meter.http_request("POST", 202, 0.01)
        meter.smtp_transaction(0.02)

    return work


def test_two_processes_counts_are_summed_whichever_process_is_asked(tmp_path: Path) -> None:
    meter.prepare_directory(tmp_path)
    in_child(tmp_path, _worker(3, "imap"))
    in_child(tmp_path, _worker(4, "imap"))
    found = scrape(tmp_path)
    assert value(found, "mailwright_messages_total", event="received") == 7
    assert value(found, "mailwright_messages_total", event="deferred") == 2
    assert value(found, "mailwright_connections_total", protocol="imap") == 2
    assert value(found, "mailwright_auth_failures_total", protocol="imap") == 2
    assert value(found, "mailwright_http_requests_total", method="POST", status="202") == 2
    assert value(found, "mailwright_http_request_seconds_count") == 2
    assert value(found, "mailwright_smtp_transaction_seconds_count") == 2
    assert value(found, "mailwright_smtp_transaction_seconds_bucket", le="0.025") == 2
    assert value(found, "mailwright_smtp_transaction_seconds_bucket", le="0.01") == 0
    # The live gauge is a plain sum, without a series per process.
    assert value(found, "mailwright_connections_open", protocol="imap") == 2
    assert not [name for (name, labels) in found if any(k == "pid" for k, _ in labels)]


def test_a_dead_process_keeps_its_counters_and_loses_its_open_connections(
    tmp_path: Path,
) -> None:
    meter.prepare_directory(tmp_path)
    _, dead = in_child(tmp_path, _worker(5, "pop3"))
    in_child(tmp_path, _worker(1, "pop3"))
    assert value(scrape(tmp_path), "mailwright_connections_open", protocol="pop3") == 2
    in_child(tmp_path, lambda: meter.process_dead(dead))  # as the supervisor's reaper does
    found = scrape(tmp_path)
    assert value(found, "mailwright_connections_open", protocol="pop3") == 1
    assert value(found, "mailwright_messages_total", event="received") == 6
    assert value(found, "mailwright_connections_total", protocol="pop3") == 2


def test_prepare_directory_forgets_an_earlier_run(tmp_path: Path) -> None:
    meter.prepare_directory(tmp_path)
    in_child(tmp_path, _worker(9, "smtp"))
    assert list(tmp_path.glob("*.db"))
    meter.prepare_directory(tmp_path)
    assert not list(tmp_path.glob("*.db"))
    assert value(scrape(tmp_path), "mailwright_messages_total", event="received") == 0


def test_prepare_directory_makes_the_directory(tmp_path: Path) -> None:
    where = tmp_path / "run" / "metrics"
    meter.prepare_directory(where)
    assert where.is_dir()


# -- counts made on an event loop ------------------------------------------------------


def test_counts_on_a_loop_are_written_within_the_flush_time_or_by_a_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(meter, "FLUSH_SECONDS", 0.05)

    def expired(found: Samples) -> float:
        return value(found, "mailwright_messages_total", event="expired")

    async def scenario() -> None:
        start = expired(samples(meter.exposition()))
        meter.messages("expired", 2)
        meter.connection_opened("pop3")
        meter.connection_closed("pop3")  # a gauge's ups and downs net out
        assert meter._pending.counts, "written at once, not gathered"
        await asyncio.sleep(0.2)
        assert not meter._pending.counts  # the timer wrote them
        assert expired(samples(meter.exposition())) == start + 2
        meter.messages("expired")
        meter.smtp_transaction(0.004)
        # A scrape does not wait for the timer: it writes its own process's counts first.
        found = samples(meter.exposition())
        assert expired(found) == start + 3
        assert value(found, "mailwright_connections_open", protocol="pop3") == 0

    asyncio.run(scenario())
    meter.messages("expired")  # no loop: written at once
    assert not meter._pending.counts

    async def later_loop() -> None:
        meter.messages("expired")  # a new loop's timer, whatever the last loop left
        await asyncio.sleep(0.2)
        assert not meter._pending.counts

    asyncio.run(scenario())  # ends with the timer of a loop that is gone
    asyncio.run(later_loop())
