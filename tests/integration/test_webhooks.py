"""Webhooks on a running server: registered through the HTTP API, events of messages sent
through the API POSTed to real local receivers (stdlib ``ThreadingHTTPServer`` on
127.0.0.1) that verify every signature; retries until a 2xx, a receiver that comes up
late, the types filter, a domain-restricted key, and bad input.

The server runs with a short webhook poll and retry schedule (``[webhooks]`` settings
through the environment), so every case takes about a second."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import Server, mailwright
from tests.integration.test_http_api import Client, make_key, message
from tests.integration.test_webhooks_dispatcher import Receiver, closed_port, serving

Json = dict[str, Any]
WAIT = 10.0  # seconds: the longest any condition here may take
Api = tuple[Server, Client, dict[str, str]]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root: Path = tmp_path_factory.mktemp("webhooks")
    server = Server.create(
        root / "mw",
        users=("alice@example.test", "bob@example.test"),
        MAILWRIGHT_WEBHOOKS__POLL_INTERVAL="0.1",
        MAILWRIGHT_WEBHOOKS__RETRY_SCHEDULE="[0.1, 0.2]",
        MAILWRIGHT_WEBHOOKS__TIMEOUT="2",
        MAILWRIGHT_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.0/8"]',  # the receivers' loopback
    )
    mailwright("domain", "add", "other.test", config=server.config)
    mailwright(
        "user", "add", "carol@other.test", "--password-stdin", config=server.config, stdin="pw\n"
    )
    keys = {
        "all": make_key(server, "--scope", "send", "--scope", "read", "--scope", "manage"),
        "send": make_key(server, "--scope", "send"),
        "other": make_key(server, "--scope", "send", "--scope", "manage", "--domain", "other.test"),
    }
    server.start()
    try:
        yield server, Client(server), keys
    finally:
        server.close()


def until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds, for at most ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def register(client: Client, key: str, receiver: Receiver, types: list[str] | None = None) -> Json:
    body: Json = {"url": receiver.url()}
    if types is not None:
        body["types"] = types
    status, made, _ = client.call("POST", "/v1/webhooks", body, key=key)
    assert status == 201, made
    receiver.secrets[made["id"]] = made["secret"]
    return dict(made)


def unregister(client: Client, key: str, hook: Json) -> None:
    status, _, _ = client.call("DELETE", f"/v1/webhooks/{hook['id']}", key=key)
    assert status == 204


def send(client: Client, key: str, **fields: object) -> str:
    status, out, _ = client.call("POST", "/v1/messages", message(**fields), key=key)
    assert status == 202, out
    return str(out["id"])


def listed(client: Client, key: str, hook: Json) -> Json:
    status, hooks, _ = client.call("GET", "/v1/webhooks", key=key)
    assert status == 200, hooks
    [found] = [h for h in hooks if h["id"] == hook["id"]]
    return dict(found)


def of(receiver: Receiver, hook: Json, qid: str) -> list[tuple[str, str | None]]:
    """(type, recipient) of the events about ``qid`` that ``hook`` got with a 2xx."""
    return [(e["type"], e["recipient"]) for e in receiver.events(hook["id"]) if e["message"] == qid]


def test_events_of_a_sent_message_arrive_signed_and_in_order(api: Api) -> None:
    _server, client, keys = api
    with serving(Receiver()) as receiver:
        hook = register(client, keys["all"], receiver)
        assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
        assert (hook["url"], hook["types"], hook["sender_domain"]) == (receiver.url(), [], None)
        assert hook["created_at"] > 0
        qid = send(client, keys["send"], to=["bob@example.test", "alice@example.test"])
        want = [("accepted", None), ("delivered", "bob@example.test")]
        want.append(("delivered", "alice@example.test"))
        until(lambda: of(receiver, hook, qid) == want, "the message's events")
        posts = receiver.all_posts()
        assert posts and all(p.signed for p in posts)
        ids = [e["id"] for e in receiver.events(hook["id"])]
        assert ids == sorted(ids, key=lambda i: tuple(int(n) for n in i.split(".")))
        until(lambda: listed(client, keys["all"], hook)["last_success"] is not None, "a success")
        shown = listed(client, keys["all"], hook)
        assert "secret" not in shown
        assert (shown["attempts"], shown["last_error"], shown["next_attempt"]) == (0, "", None)
        unregister(client, keys["all"], hook)


def test_a_failing_receiver_gets_the_same_events_until_it_answers_2xx(api: Api) -> None:
    _server, client, keys = api
    with serving(Receiver(statuses=[500, 500])) as receiver:
        hook = register(client, keys["all"], receiver)
        qid = send(client, keys["send"])
        want = [("accepted", None), ("delivered", "bob@example.test")]
        until(lambda: of(receiver, hook, qid) == want, "a 2xx")
        posts = receiver.all_posts()
        assert [p.status for p in posts] == [500, 500, 200]
        assert all(p.signed and p.events == posts[0].events for p in posts)
        unregister(client, keys["all"], hook)


def test_a_receiver_that_is_down_gets_everything_once_it_is_up(api: Api) -> None:
    _server, client, keys = api
    receiver = Receiver(port=closed_port())
    hook = register(client, keys["all"], receiver)
    first = send(client, keys["send"])
    until(lambda: listed(client, keys["all"], hook)["attempts"] >= 2, "failed attempts")
    down = listed(client, keys["all"], hook)
    assert "refused" in down["last_error"].lower() and down["next_attempt"] is not None
    second = send(client, keys["send"])
    with serving(receiver):
        until(lambda: len(of(receiver, hook, second)) == 2, "the events once it is up")
        assert of(receiver, hook, first) == [("accepted", None), ("delivered", "bob@example.test")]
        assert all(p.signed for p in receiver.all_posts())
        unregister(client, keys["all"], hook)


def test_the_types_filter(api: Api) -> None:
    _server, client, keys = api
    with serving(Receiver()) as receiver:
        delivered = register(client, keys["all"], receiver, ["delivered", "delivered"])
        assert delivered["types"] == ["delivered"]
        everything = register(client, keys["all"], receiver)
        qid = send(client, keys["send"])
        until(lambda: len(of(receiver, everything, qid)) == 2, "every event")
        until(lambda: of(receiver, delivered, qid) == [("delivered", "bob@example.test")], "one")
        for hook in (delivered, everything):
            unregister(client, keys["all"], hook)


def test_a_domain_restricted_key_gets_only_its_domain(api: Api) -> None:
    _server, client, keys = api
    with serving(Receiver()) as receiver:
        theirs = register(client, keys["other"], receiver)
        assert theirs["sender_domain"] == "other.test"
        everyone = register(client, keys["all"], receiver)
        ours = send(client, keys["send"])
        carols = send(client, keys["other"], **{"from": "carol@other.test"})
        until(lambda: len(of(receiver, everyone, carols)) == 2, "every event")
        until(lambda: len(of(receiver, theirs, carols)) == 2, "other.test's events")
        assert len(of(receiver, everyone, ours)) == 2
        assert {e["message"] for e in receiver.events(theirs["id"])} == {carols}
        # The restricted key sees and deletes only its own domain's webhooks.
        status, seen, _ = client.call("GET", "/v1/webhooks", key=keys["other"])
        assert status == 200 and [h["id"] for h in seen] == [theirs["id"]]
        status, err, _ = client.call("DELETE", f"/v1/webhooks/{everyone['id']}", key=keys["other"])
        assert status == 404 and err["error"]["type"] == "not_found"
        status, seen, _ = client.call("GET", "/v1/webhooks", key=keys["all"])
        assert {theirs["id"], everyone["id"]} <= {h["id"] for h in seen}
        unregister(client, keys["other"], theirs)
        unregister(client, keys["all"], everyone)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "https://user:pw@example.test/"}, "url"),
        ({"url": "https://example.test/" + "a" * 2000}, "url"),
        ({"url": "https://example.test/\r\nX: y"}, "url"),
        ({"url": "https://example.test/", "types": ["accepted", "nope"]}, "types.1"),
        # Addresses outside webhooks.allowed_networks (here 127.0.0.0/8) that are not public.
        ({"url": "http://10.0.0.1/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://[::1]:8080/hook"}, "url"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api: Api, body: Json, field: str) -> None:
    _server, client, keys = api
    status, err, _ = client.call("POST", "/v1/webhooks", body, key=keys["all"])
    assert status == 422, err
    assert err["error"]["field"] == field


def test_malformed_requests_and_keys(api: Api) -> None:
    _server, client, keys = api
    good = {"url": "https://example.test/hook"}
    status, err, _ = client.call("POST", "/v1/webhooks", {**good, "extra": 1}, key=keys["all"])
    assert (status, err["error"]["field"]) == (400, "extra")
    status, err, _ = client.call("POST", "/v1/webhooks", {"types": []}, key=keys["all"])
    assert (status, err["error"]["field"]) == (400, "url")
    status, _, _ = client.call("POST", "/v1/webhooks", good)
    assert status == 401
    status, _, _ = client.call("GET", "/v1/webhooks")
    assert status == 401
    status, err, _ = client.call("POST", "/v1/webhooks", good, key=keys["send"])
    assert status == 403 and err["error"]["type"] == "forbidden"
    status, _, _ = client.call("GET", "/v1/webhooks", key=keys["send"])
    assert status == 403
    status, _, _ = client.call("DELETE", "/v1/webhooks/999999", key=keys["all"])
    assert status == 404
    # Nothing was registered by any of these.
    status, hooks, _ = client.call("GET", "/v1/webhooks", key=keys["all"])
    assert status == 200 and not [h for h in hooks if h["url"] == good["url"]]
