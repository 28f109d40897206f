"""Per-key limits of the HTTP API on a running server: a daily quota of recipients and a
rate of messages per second, each answered with 429 and Retry-After; usage and limits
through the API and the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server, mailwright
from tests.integration.test_http_api import Client, make_key, message, parsed


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Client, str]]:
    root: Path = tmp_path_factory.mktemp("limits")
    server = Server.create(root / "mw", users=("alice@example.test", "bob@example.test"))
    manage = make_key(server, "--scope", "manage", "--scope", "read")
    server.start()
    try:
        yield server, Client(server), manage
    finally:
        server.close()


def test_a_daily_quota_counts_recipients(limited: tuple[Server, Client, str]) -> None:
    server, client, manage = limited
    key = make_key(server, "--scope", "send", "--daily-quota", "3")
    two = message(to=["bob@example.test", "alice@example.test"])
    assert client.call("POST", "/v1/messages", two, key=key)[0] == 202
    before = len(server.inbox("bob@example.test"))
    status, err, headers = client.call("POST", "/v1/messages", two, key=key)
    assert (status, err["error"]["type"]) == (429, "quota_exceeded"), err
    assert 1 <= int(headers["retry-after"]) <= 86400
    assert len(server.inbox("bob@example.test")) == before  # nothing sent
    assert client.call("POST", "/v1/messages", message(), key=key)[0] == 202
    status, usage, _ = client.call("GET", "/v1/usage", key=key)
    assert status == 200, usage
    assert (usage["daily_quota"], usage["messages_today"], usage["recipients_today"]) == (3, 2, 3)
    assert usage["resets_at"] % 86400 == 0
    # Lifting the quota (PATCH, a manage key) lets it send again at once.
    key_id = usage["key_id"]
    status, changed, _ = client.call(
        "PATCH", f"/v1/api-keys/{key_id}", {"daily_quota": None, "rate_limit": None}, key=manage
    )
    assert status == 200 and changed["daily_quota"] is None, changed
    assert client.call("POST", "/v1/messages", two, key=key)[0] == 202


def test_a_rate_limit_answers_429_with_retry_after(limited: tuple[Server, Client, str]) -> None:
    server, client, _manage = limited
    key = make_key(server, "--scope", "send", "--rate-limit", "1")
    statuses = []
    for _ in range(5):
        status, _body, headers = client.call("POST", "/v1/messages", message(), key=key)
        statuses.append(status)
        if status == 429:
            assert headers["retry-after"] == "1"
            break
    assert statuses[0] == 202 and statuses[-1] == 429, statuses
    # The batch endpoint answers the refusal per message.
    status, out, _ = client.call(
        "POST", "/v1/messages/batch", {"messages": [message(), message()]}, key=key
    )
    assert status == 200 and 429 in [r["status"] for r in out["results"]], out


def test_limits_are_checked_and_shown(limited: tuple[Server, Client, str]) -> None:
    server, client, manage = limited
    status, err, _ = client.call(
        "POST", "/v1/api-keys", {"scopes": ["send"], "daily_quota": 0}, key=manage
    )
    assert (status, err["error"]["field"]) == (400, "daily_quota")
    status, made, _ = client.call(
        "POST", "/v1/api-keys", {"scopes": ["send"], "rate_limit": 10}, key=manage
    )
    assert status == 201 and made["rate_limit"] == 10 and made["daily_quota"] is None
    assert (
        client.call(
            "PATCH", "/v1/api-keys/99999", {"daily_quota": 1, "rate_limit": None}, key=manage
        )[0]
        == 404
    )
    listed = mailwright("apikey", "list", config=server.config)
    assert "10/s" in listed
    out = mailwright(
        "apikey", "limits", str(made["id"]), "--daily-quota", "500", config=server.config
    )
    assert "500/day" in out and "/s" not in out
    with pytest.raises(RuntimeError, match="at least 1"):
        mailwright("apikey", "limits", str(made["id"]), "--rate-limit", "0", config=server.config)


def test_stats_count_events_by_day_domain_and_tag(limited: tuple[Server, Client, str]) -> None:
    server, client, _manage = limited
    key = make_key(server, "--scope", "send", "--scope", "read")
    for tag in ("spring", "spring", "autumn"):
        status, _, _ = client.call(
            "POST",
            "/v1/messages",
            message(to=["bob@example.test", "someone@remote.test"], tags=[tag]),
            key=key,
        )
        assert status == 202
    status, by_tag, _ = client.call("GET", "/v1/stats?group_by=tag", key=key)
    assert status == 200, by_tag
    tags = {g["group"]: g["counts"] for g in by_tag["data"]}
    assert tags["spring"]["accepted"] == 2 and tags["spring"]["delivered"] == 2
    assert tags["spring"]["queued"] == 2 and tags["autumn"]["accepted"] == 1
    status, by_domain, _ = client.call("GET", "/v1/stats?group_by=domain", key=key)
    domains = {g["group"]: g["counts"] for g in by_domain["data"]}
    assert domains["example.test"]["delivered"] >= 3 and domains["remote.test"]["queued"] >= 3
    status, by_day, _ = client.call("GET", "/v1/stats", key=key)
    assert status == 200 and by_day["group_by"] == "day"
    assert sum(g["counts"]["accepted"] for g in by_day["data"]) >= 3
    # Nothing before the messages were sent.
    status, empty, _ = client.call("GET", "/v1/stats?from=0&to=1000", key=key)
    assert status == 200 and empty["data"] == []
    status, err, _ = client.call("GET", "/v1/stats?from=2000&to=1000", key=key)
    assert (status, err["error"]["field"]) == (400, "from")
    status, err, _ = client.call("GET", "/v1/stats?group_by=week", key=key)
    assert (status, err["error"]["field"]) == (400, "group_by")
    assert client.call("GET", "/v1/stats", key=make_key(server, "--scope", "send"))[0] == 403


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_send_at_in_the_future_is_held_then_sent(limited: tuple[Server, Client, str]) -> None:
    server, client, _manage = limited
    key = make_key(server, "--scope", "send", "--scope", "read")
    before = len(server.inbox("bob@example.test"))
    when = time.time() + 2
    body = message(subject="later", send_at=when, tags=["held"])
    headers = {"Idempotency-Key": "held-1"}
    status, out, _ = client.call("POST", "/v1/messages", body, key=key, headers=headers)
    assert status == 202, out
    assert out["message_id"] == "" and [r["status"] for r in out["recipients"]] == ["scheduled"]
    # A retry while it is held is the same message.
    status, again, _ = client.call("POST", "/v1/messages", body, key=key, headers=headers)
    assert status == 200 and again["id"] == out["id"]
    status, state, _ = client.call("GET", f"/v1/messages/{out['id']}", key=key)
    if len(server.inbox("bob@example.test")) == before:  # (a very slow machine: sent already)
        assert state["send_at"] == pytest.approx(when) and state["tags"] == ["held"]
    assert wait_for(lambda: len(server.inbox("bob@example.test")) == before + 1)
    sent = parsed(server.inbox("bob@example.test")[-1])
    assert sent["Subject"] == "later" and sent["Message-ID"].startswith(f"<{out['id']}.")
    assert wait_for(
        lambda: (
            client.call("GET", f"/v1/messages/{out['id']}", key=key)[1]["recipients"][0]["status"]
            == "delivered"
        )
    )
    assert len(server.inbox("bob@example.test")) == before + 1  # once


def test_a_held_send_can_be_cancelled(limited: tuple[Server, Client, str]) -> None:
    server, client, _manage = limited
    key = make_key(server, "--scope", "send", "--scope", "read")
    status, out, _ = client.call(
        "POST", "/v1/messages", message(send_at="2999-01-01T00:00:00Z"), key=key
    )
    assert status == 202, out
    assert client.call("DELETE", f"/v1/messages/{out['id']}", key=key)[0] == 204
    assert client.call("GET", f"/v1/messages/{out['id']}", key=key)[0] == 404
    assert client.call("DELETE", f"/v1/messages/{out['id']}", key=key)[0] == 404
    status, sent, _ = client.call("POST", "/v1/messages", message(send_at=0), key=key)
    assert status == 202 and sent["recipients"][0]["status"] == "delivered"  # past: now
    assert client.call("DELETE", f"/v1/messages/{sent['id']}", key=key)[0] == 409
    status, err, _ = client.call("POST", "/v1/messages", message(send_at="soon"), key=key)
    assert (status, err["error"]["field"]) == (400, "send_at")


def test_a_held_send_survives_a_sigkill(tmp_path: Path) -> None:
    server = Server.create(tmp_path / "mw", users=("bob@example.test",))
    key = make_key(server, "--scope", "send")
    server.start()
    try:
        status, _out, _ = Client(server).call(
            "POST", "/v1/messages", message(send_at=time.time() + 4), key=key
        )
        assert status == 202
        server.kill()
        assert server.inbox("bob@example.test") == []
        server.start()
        assert wait_for(lambda: len(server.inbox("bob@example.test")) == 1)
    finally:
        server.close()
