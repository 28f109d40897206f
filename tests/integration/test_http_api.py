"""The HTTP sending API on a running server, through a real HTTP client (urllib) on
loopback: send, idempotency, batches, message state, events, keys, and every bad input
answered with its status and the field it names — the server serving on after each."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import Server, mailwright

Json = dict[str, Any]
MAX_REQUEST = 1024 * 1024  # http.max_request_size of the test server
MAX_MESSAGE = 600 * 1024  # smtp.max_message_size


class Client:
    def __init__(self, server: Server) -> None:
        self.base = f"http://127.0.0.1:{server.http_port}"

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
            got = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
            got = {k.lower(): v for k, v in exc.headers.items()}
        if not payload:
            return status, None, got
        try:
            return status, json.loads(payload), got
        except ValueError:
            return status, payload.decode(), got


def make_key(server: Server, *args: str) -> str:
    out = mailwright("apikey", "create", *args, config=server.config)
    return out.splitlines()[0].strip()


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Client, dict[str, str]]]:
    root: Path = tmp_path_factory.mktemp("api")
    server = Server.create(
        root / "mw",
        users=("alice@example.test", "bob@example.test", "dave@example.test", "erin@example.test"),
        MAILWRIGHT_HTTP__MAX_REQUEST_SIZE=str(MAX_REQUEST),
        MAILWRIGHT_SMTP__MAX_MESSAGE_SIZE=str(MAX_MESSAGE),
    )
    mailwright("domain", "add", "other.test", config=server.config)
    mailwright(
        "user", "add", "carol@other.test", "--password-stdin", config=server.config, stdin="pw\n"
    )
    keys = {
        "all": make_key(server, "--scope", "send", "--scope", "read", "--scope", "manage"),
        "send": make_key(server, "--scope", "send"),
        "read": make_key(server, "--scope", "read"),
        "other": make_key(server, "--scope", "send", "--scope", "read", "--domain", "other.test"),
    }
    server.start()
    try:
        yield server, Client(server), keys
    finally:
        server.close()


def message(**kw: object) -> Json:
    body: Json = {
        "from": "Alice Example <alice@example.test>",
        "to": ["bob@example.test"],
        "subject": "Hello from the API",
        "text": "Plain words.\n",
    }
    body.update(kw)
    return body


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_a_message_to_a_local_user_is_delivered_and_reported(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    before = len(server.inbox("bob@example.test"))
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(html="<p>Hi <b>Bob</b></p>", tags=["welcome"], metadata={"user": "42"}),
        key=keys["send"],
    )
    assert status == 202, out
    assert out["recipients"] == [
        {"email": "bob@example.test", "status": "delivered", "reason": None}
    ]
    assert out["message_id"]
    inbox = server.inbox("bob@example.test")
    assert len(inbox) == before + 1
    msg = parsed(inbox[-1])
    assert msg["Subject"] == "Hello from the API"
    assert msg["From"] == "Alice Example <alice@example.test>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == "Plain words.\n"
    assert html is not None and "<b>Bob</b>" in html.get_content()
    # The message's state, by its id.
    status, state, _ = client.call("GET", f"/v1/messages/{out['id']}", key=keys["read"])
    assert status == 200, state
    assert state["tags"] == ["welcome"] and state["metadata"] == {"user": "42"}
    assert state["message_id"] == out["message_id"] == msg["Message-ID"]
    assert out["message_id"].startswith(f"<{out['id']}.")
    [rcpt] = state["recipients"]
    assert (rcpt["email"], rcpt["status"]) == ("bob@example.test", "delivered")


def test_remote_recipients_are_queued_and_bcc_stays_out_of_the_header(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(to=["someone@remote.test"], cc=["alice@example.test"], bcc=["bob@example.test"]),
        key=keys["all"],
    )
    assert status == 202, out
    got = {r["email"]: r["status"] for r in out["recipients"]}
    assert got == {
        "someone@remote.test": "queued",
        "alice@example.test": "delivered",
        "bob@example.test": "delivered",
    }
    with server.db() as db:
        queued = db.execute("SELECT recipient FROM queue WHERE queue_id=?", (out["id"],)).fetchall()
    assert queued == [("someone@remote.test",)]
    copy = parsed(server.inbox("bob@example.test")[-1])
    assert copy["Bcc"] is None and copy["Cc"] == "alice@example.test"
    status, state, _ = client.call("GET", f"/v1/messages/{out['id']}", key=keys["all"])
    states = {r["email"]: r["status"] for r in state["recipients"]}
    assert states["someone@remote.test"] in ("queued", "deferred")


def test_attachments_and_inline_images(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    pdf = bytes(range(256)) * 10
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(
            html='<img src="cid:logo@x">',
            attachments=[
                {
                    "filename": "report.pdf",
                    "content": base64.b64encode(pdf).decode(),
                    "content_type": "application/pdf",
                },
                {
                    "filename": "logo.png",
                    "content": base64.b64encode(png).decode(),
                    "content_type": "image/png",
                    "inline": True,
                    "content_id": "logo@x",
                },
            ],
        ),
        key=keys["send"],
    )
    assert status == 202, out
    msg = parsed(server.inbox("bob@example.test")[-1])
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert parts["report.pdf"].get_content() == pdf
    assert parts["logo.png"].get_content() == png
    assert parts["logo.png"]["Content-ID"] == "<logo@x>"


def test_an_idempotency_key_sends_once(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    before = len(server.inbox("bob@example.test"))
    body = message(subject="once")
    headers = {"Idempotency-Key": "order-1234"}
    first = client.call("POST", "/v1/messages", body, key=keys["send"], headers=headers)
    second = client.call("POST", "/v1/messages", body, key=keys["send"], headers=headers)
    assert first[0] == 202 and second[0] == 200
    assert second[1]["id"] == first[1]["id"]
    assert len(server.inbox("bob@example.test")) == before + 1
    # The same key for another request is refused; another API key has its own keys.
    status, err, _ = client.call(
        "POST", "/v1/messages", message(subject="twice"), key=keys["send"], headers=headers
    )
    assert (status, err["error"]["field"]) == (422, "Idempotency-Key")
    status, _, _ = client.call("POST", "/v1/messages", body, key=keys["all"], headers=headers)
    assert status == 202
    assert len(server.inbox("bob@example.test")) == before + 2


def test_a_batch_answers_per_message(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    before = len(server.inbox("bob@example.test"))
    status, out, _ = client.call(
        "POST",
        "/v1/messages/batch",
        {
            "messages": [
                message(subject="b1"),
                message(to=["not an address"]),
                message(subject="b3", to=["nobody@example.test", "bob@example.test"]),
            ]
        },
        key=keys["send"],
    )
    assert status == 200, out
    r = out["results"]
    assert [x["status"] for x in r] == [202, 422, 202]
    assert r[1]["error"]["field"] == "messages.1.to.0"
    assert {x["email"]: x["status"] for x in r[2]["message"]["recipients"]} == {
        "bob@example.test": "delivered",
        "nobody@example.test": "rejected",
    }
    assert len(server.inbox("bob@example.test")) == before + 2


def test_events_filter_and_page(api: tuple[Server, Client, dict[str, str]]) -> None:
    _server, client, keys = api
    ids = []
    for i in range(3):
        status, out, _ = client.call(
            "POST", "/v1/messages", message(subject=f"ev{i}", tags=["paged"]), key=keys["send"]
        )
        assert status == 202
        ids.append(out["id"])
    status, page, _ = client.call(
        "GET", "/v1/events?tag=paged&type=delivered&limit=2", key=keys["read"]
    )
    assert status == 200, page
    seen = [e["message"] for e in page["data"]]
    assert page["next_cursor"] is not None
    status, rest, _ = client.call(
        "GET",
        f"/v1/events?tag=paged&type=delivered&limit=2&cursor={page['next_cursor']}",
        key=keys["read"],
    )
    seen += [e["message"] for e in rest["data"]]
    assert seen == ids
    assert all(
        e["type"] == "delivered" and e["recipient"] == "bob@example.test" for e in page["data"]
    )
    status, one, _ = client.call("GET", f"/v1/events?message={ids[0]}", key=keys["read"])
    assert [e["type"] for e in one["data"]] == ["accepted", "delivered"]
    status, by_rcpt, _ = client.call(
        "GET", "/v1/events?recipient=bob@example.test&type=delivered&tag=paged", key=keys["read"]
    )
    assert [e["message"] for e in by_rcpt["data"]] == ids


def test_a_key_for_one_domain_sends_and_sees_only_that_domain(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    _server, client, keys = api
    status, err, _ = client.call("POST", "/v1/messages", message(), key=keys["other"])
    assert (status, err["error"]["field"]) == (403, "from")
    status, out, _ = client.call(
        "POST", "/v1/messages", message(**{"from": "carol@other.test"}), key=keys["other"]
    )
    assert status == 202, out
    status, _, _ = client.call("GET", f"/v1/messages/{out['id']}", key=keys["other"])
    assert status == 200
    # A message of example.test is not there for it.
    _, mine, _ = client.call("POST", "/v1/messages", message(), key=keys["send"])
    status, _, _ = client.call("GET", f"/v1/messages/{mine['id']}", key=keys["other"])
    assert status == 404
    _, events, _ = client.call("GET", "/v1/events?limit=1000", key=keys["other"])
    assert {e["message"] for e in events["data"]} == {out["id"]}


def test_keys_are_managed_through_the_api(api: tuple[Server, Client, dict[str, str]]) -> None:
    _server, client, keys = api
    status, made, _ = client.call(
        "POST", "/v1/api-keys", {"name": "ci", "scopes": ["send"]}, key=keys["all"]
    )
    assert status == 201, made
    assert made["key"].startswith("mw_") and made["prefix"] == made["key"][:10]
    status, _, _ = client.call("POST", "/v1/messages", message(), key=made["key"])
    assert status == 202
    status, listed, _ = client.call("GET", "/v1/api-keys", key=keys["all"])
    assert made["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    status, _, _ = client.call("DELETE", f"/v1/api-keys/{made['id']}", key=keys["all"])
    assert status == 204
    status, err, headers = client.call("POST", "/v1/messages", message(), key=made["key"])
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    status, _, _ = client.call("DELETE", "/v1/api-keys/99999", key=keys["all"])
    assert status == 404
    status, err, _ = client.call("POST", "/v1/api-keys", {"scopes": ["root"]}, key=keys["all"])
    assert (status, err["error"]["field"]) == (400, "scopes.0")
    status, err, _ = client.call(
        "POST", "/v1/api-keys", {"scopes": ["send"], "sender_domain": "x.test"}, key=keys["all"]
    )
    assert (status, err["error"]["field"]) == (422, "sender_domain")


BAD_REQUESTS = [
    # (what, body or raw bytes, status, field, type)
    ("malformed JSON", b'{"from": "alice@example.test", "to": [', 400, "body", "malformed_json"),
    ("not an object", b"[1, 2]", 400, "body", "invalid_request"),
    ("wrong type", message(to="bob@example.test"), 400, "to", "invalid_request"),
    (
        "nested wrong type",
        message(attachments=[{"filename": 3, "content": ""}]),
        400,
        "attachments.0.filename",
        "invalid_request",
    ),
    ("unknown field", message(sender_name="x"), 400, "sender_name", "invalid_request"),
    ("missing from", {"to": ["bob@example.test"], "text": "x"}, 400, "from", "invalid_request"),
    (
        "bad recipient",
        message(to=["bob@example.test", "bob@@example.test"]),
        422,
        "to.1",
        "invalid_address",
    ),
    ("bad cc", message(cc=["x\r\nBcc: evil@remote.test"]), 422, "cc.0", "invalid_address"),
    ("bad sender", message(**{"from": "alice"}), 422, "from", "invalid_address"),
    ("foreign sender", message(**{"from": "mallory@remote.test"}), 422, "from", "foreign_sender"),
    ("no recipient", message(to=[]), 422, "to", "no_recipients"),
    (
        "header injection",
        message(headers={"X-Campaign": "a\r\nBcc: evil@remote.test"}),
        422,
        "headers.X-Campaign",
        "invalid_message",
    ),
    (
        "protected header",
        message(headers={"Subject": "again"}),
        422,
        "headers.Subject",
        "invalid_message",
    ),
    ("bad header name", message(headers={"X Bad": "v"}), 422, "headers.X Bad", "invalid_message"),
    (
        "bad base64",
        message(attachments=[{"filename": "a.txt", "content": "!!"}]),
        422,
        "attachments.0.content",
        "invalid_attachment",
    ),
    ("bad tag", message(tags=["no spaces"]), 400, "tags.0", "invalid_request"),
    ("no body", message(text=None), 422, "text", "invalid_message"),
    ("unknown user only", message(to=["nobody@example.test"]), 422, "to", "no_recipients"),
]


@pytest.mark.parametrize(
    ("what", "body", "status", "field", "kind"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_name_their_field_and_store_nothing(
    api: tuple[Server, Client, dict[str, str]],
    what: str,
    body: object,
    status: int,
    field: str,
    kind: str,
) -> None:
    server, client, keys = api
    with server.db() as db:
        (messages_before,) = db.execute("SELECT count(*) FROM messages").fetchone()
    raw = body if isinstance(body, bytes) else None
    got, err, _ = client.call(
        "POST", "/v1/messages", None if raw else body, raw=raw, key=keys["send"]
    )
    assert got == status, err
    assert err["error"]["field"] == field and err["error"]["type"] == kind, err
    with server.db() as db:
        (messages_after,) = db.execute("SELECT count(*) FROM messages").fetchone()
    assert messages_after == messages_before
    # ... and the server goes on serving.
    assert client.call("POST", "/v1/messages", message(), key=keys["send"])[0] == 202


def test_keys_and_scopes(api: tuple[Server, Client, dict[str, str]]) -> None:
    _server, client, keys = api
    status, err, _headers = client.call("POST", "/v1/messages", message())
    assert status == 401 and err["error"]["type"] == "unauthorized"
    assert client.call("POST", "/v1/messages", message(), key="mw_nonsense")[0] == 401
    assert client.call("POST", "/v1/messages", message(), key=keys["read"])[0] == 403
    assert client.call("GET", "/v1/events", key=keys["send"])[0] == 403
    assert client.call("GET", "/v1/api-keys", key=keys["send"])[0] == 403
    assert client.call("GET", "/v1/messages/NOPE", key=keys["read"])[0] == 404
    assert client.call("GET", "/v1/nothing", key=keys["read"])[0] == 404
    status, err, _ = client.call("GET", "/v1/events?type=opened,nope", key=keys["read"])
    assert (status, err["error"]["field"]) == (400, "type")
    status, err, _ = client.call("GET", "/v1/events?cursor=abc", key=keys["read"])
    assert (status, err["error"]["field"]) == (400, "cursor")


def raw_http(server: Server, head: bytes, body: bytes = b"") -> bytes:
    """Send a request's head and (part of) a body on a plain socket; the reply's bytes."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_an_oversized_body_is_413(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    auth = f"Authorization: Bearer {keys['send']}\r\n".encode()
    # Announced too large: refused before a byte of the body is read.
    reply = raw_http(
        server,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
        + auth
        + f"Content-Type: application/json\r\nContent-Length: {MAX_REQUEST + 1}\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"too_large"' in reply
    # Chunked, with no length announced: refused once the limit is passed.
    chunk = b"x" * 65536
    body = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (MAX_REQUEST // len(chunk) + 2)
    reply = raw_http(
        server,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        body + b"0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # A body within the limit whose message is over the message size limit.
    status, err, _ = client.call(
        "POST",
        "/v1/messages",
        message(
            attachments=[
                {
                    "filename": "a.bin",
                    "content": base64.b64encode(b"y" * (MAX_MESSAGE - 1000)).decode(),
                }
            ]
        ),
        key=keys["send"],
    )
    assert (status, err["error"]["type"]) == (413, "too_large"), err
    assert client.call("POST", "/v1/messages", message(), key=keys["send"])[0] == 202


def test_openapi_document_and_docs_page(api: tuple[Server, Client, dict[str, str]]) -> None:
    _server, client, _keys = api
    status, doc, _ = client.call("GET", "/openapi.json")
    assert status == 200
    assert {"/v1/messages", "/v1/messages/batch", "/v1/events", "/v1/api-keys"} <= set(doc["paths"])
    status, page, _headers = client.call("GET", "/docs")
    assert status == 200 and "openapi.json" in page


def test_a_sigkill_after_202_loses_nothing(tmp_path: Path) -> None:
    server = Server.create(tmp_path / "mw", users=("bob@example.test",))
    key = make_key(server, "--scope", "send", "--scope", "read")
    server.start()
    client = Client(server)
    ids = []
    try:
        for i in range(5):
            status, out, _ = client.call(
                "POST",
                "/v1/messages",
                message(subject=f"k{i}", to=["bob@example.test", "x@remote.test"]),
                key=key,
            )
            assert status == 202
            ids.append(out["id"])
        server.kill()
        assert len(server.inbox("bob@example.test")) == 5
        server.start()
        client = Client(server)
        for qid in ids:
            status, state, _ = client.call("GET", f"/v1/messages/{qid}", key=key)
            assert status == 200
            assert {r["email"] for r in state["recipients"]} == {
                "bob@example.test",
                "x@remote.test",
            }
    finally:
        server.close()


def test_templates_are_checked_saved_and_rendered_per_recipient(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    status, made, _ = client.call(
        "POST",
        "/v1/templates",
        {
            "id": "welcome",
            "name": "Welcome",
            "subject": "Welcome, {{ name }}",
            "text": "Hello {{ name }}, your plan is {{ plan }}.",
            "html": "<p>Hello {{ name }}</p>",
        },
        key=keys["all"],
    )
    assert status == 201, made
    assert client.call("GET", "/v1/templates/welcome", key=keys["read"])[1]["subject"] == (
        "Welcome, {{ name }}"
    )
    before = len(server.inbox("bob@example.test"))
    # Per-recipient variables: a batch of one message per recipient.
    status, out, _ = client.call(
        "POST",
        "/v1/messages/batch",
        {
            "messages": [
                {
                    "from": "alice@example.test",
                    "to": ["bob@example.test"],
                    "template_id": "welcome",
                    "variables": {"name": "<Bob>", "plan": "gold"},
                },
                {
                    "from": "alice@example.test",
                    "to": ["alice@example.test"],
                    "template_id": "welcome",
                    "variables": {"name": "Alice"},
                },
            ]
        },
        key=keys["send"],
    )
    assert status == 200, out
    first, second = out["results"]
    assert first["status"] == 202
    assert (second["status"], second["error"]["field"]) == (422, "messages.1.variables.plan")
    msg = parsed(server.inbox("bob@example.test")[-1])
    assert len(server.inbox("bob@example.test")) == before + 1
    assert msg["Subject"] == "Welcome, <Bob>"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and "Hello <Bob>, your plan is gold." in text.get_content()
    assert html is not None and "Hello &lt;Bob&gt;" in html.get_content()
    # Replace, list, delete.
    status, _, _ = client.call(
        "PUT", "/v1/templates/welcome", {"subject": "Hi", "text": "Hi"}, key=keys["all"]
    )
    assert status == 200
    assert [t["id"] for t in client.call("GET", "/v1/templates", key=keys["read"])[1]] == [
        "welcome"
    ]
    assert client.call("DELETE", "/v1/templates/welcome", key=keys["all"])[0] == 204
    status, err, _ = client.call(
        "POST",
        "/v1/messages",
        message(text=None, subject="", template_id="welcome"),
        key=keys["send"],
    )
    assert (status, err["error"]["field"]) == (422, "template_id")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"subject": "{{ unclosed", "text": "x"}, 422, "subject"),
        ({"text": "{% for %}"}, 422, "text"),
        ({"subject": "only a subject"}, 422, "text"),
        ({"id": "Bad Id!", "text": "x"}, 422, "id"),
        ({"text": "x", "colour": "red"}, 400, "colour"),
    ],
)
def test_bad_templates_are_refused(
    api: tuple[Server, Client, dict[str, str]], body: Json, status: int, field: str
) -> None:
    _server, client, keys = api
    got, err, _ = client.call("POST", "/v1/templates", body, key=keys["all"])
    assert (got, err["error"]["field"]) == (status, field), err
    assert client.call("POST", "/v1/templates", body, key=keys["send"])[0] == 403


def test_suppressed_recipients_are_dropped_with_an_event(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    status, listed, _ = client.call(
        "POST", "/v1/suppressions", {"addresses": ["Dave@example.test"]}, key=keys["all"]
    )
    assert status == 201 and listed[0]["address"] == "dave@example.test", listed
    before = len(server.inbox("dave@example.test"))
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(to=["dave@example.test", "bob@example.test"]),
        key=keys["send"],
    )
    assert status == 202, out
    got = {r["email"]: (r["status"], r["reason"]) for r in out["recipients"]}
    assert got["dave@example.test"] == ("dropped", "suppressed (manual)")
    assert got["bob@example.test"][0] == "delivered"
    assert len(server.inbox("dave@example.test")) == before
    _, events, _ = client.call(
        "GET", f"/v1/events?message={out['id']}&type=dropped", key=keys["read"]
    )
    assert [(e["type"], e["recipient"]) for e in events["data"]] == [
        ("dropped", "dave@example.test")
    ]
    # Every recipient suppressed: nothing stored, the send and its events recorded.
    status, out, _ = client.call(
        "POST", "/v1/messages", message(to=["dave@example.test"]), key=keys["send"]
    )
    assert status == 202 and [r["status"] for r in out["recipients"]] == ["dropped"]
    _, state, _ = client.call("GET", f"/v1/messages/{out['id']}", key=keys["read"])
    assert [(r["email"], r["status"]) for r in state["recipients"]] == [
        ("dave@example.test", "dropped")
    ]
    # Off the list again.
    assert client.call("DELETE", "/v1/suppressions/dave@example.test", key=keys["all"])[0] == 204
    assert client.call("DELETE", "/v1/suppressions/dave@example.test", key=keys["all"])[0] == 404
    status, out, _ = client.call(
        "POST", "/v1/messages", message(to=["dave@example.test"]), key=keys["send"]
    )
    assert [r["status"] for r in out["recipients"]] == ["delivered"]
    status, err, _ = client.call(
        "POST", "/v1/suppressions", {"addresses": ["nope"]}, key=keys["all"]
    )
    assert (status, err["error"]["field"]) == (422, "addresses.0")
    assert (
        client.call("POST", "/v1/suppressions", {"addresses": ["a@b.test"]}, key=keys["send"])[0]
        == 403
    )


def test_one_click_unsubscribe(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(to=["erin@example.test"], unsubscribe=True),
        key=keys["send"],
    )
    assert status == 202, out
    msg = parsed(server.inbox("erin@example.test")[-1])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(msg["List-Unsubscribe"]).strip("<>")
    path = link.split(f":{server.http_port}", 1)[1]
    assert path.startswith("/v1/unsubscribe/")
    # A GET (a link scanner, a curious click) only shows the page.
    status, page, _ = client.call("GET", path)
    assert status == 200 and "erin@example.test" in page and "<form" in page
    assert client.call("GET", "/v1/suppressions", key=keys["read"])[1]["data"] == [] or all(
        s["address"] != "erin@example.test"
        for s in client.call("GET", "/v1/suppressions", key=keys["read"])[1]["data"]
    )
    # A tampered link is nothing.
    assert client.call("POST", path[:-2] + "xx", raw=b"List-Unsubscribe=One-Click")[0] == 404
    # The mailbox provider's one-click POST (RFC 8058 §3.2).
    status, body, _ = client.call(
        "POST",
        path,
        raw=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    listed = client.call("GET", "/v1/suppressions?limit=1000", key=keys["read"])[1]["data"]
    assert {"erin@example.test": "unsubscribe"}.items() <= {
        s["address"]: s["reason"] for s in listed
    }.items()
    _, events, _ = client.call("GET", f"/v1/events?message={out['id']}", key=keys["read"])
    assert [e["type"] for e in events["data"]][-1] == "unsubscribed"
    status, out, _ = client.call(
        "POST", "/v1/messages", message(to=["erin@example.test"]), key=keys["send"]
    )
    assert [r["status"] for r in out["recipients"]] == ["dropped"]
    status, err, _ = client.call(
        "POST",
        "/v1/messages",
        message(to=["bob@example.test", "alice@example.test"], unsubscribe=True),
        key=keys["send"],
    )
    assert (status, err["error"]["field"]) == (422, "unsubscribe")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A click must be seen as the server answers it: a 302 and where it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(server: Server, path: str, agent: str = "Test Mail/1.0") -> tuple[int, bytes, Json]:
    """GET ``path`` as a mail client would, following no redirect: (status, body,
    headers with lower-case names)."""
    opener = urllib.request.build_opener(_RefuseRedirects)
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}")
    request.add_header("User-Agent", agent)
    try:
        with opener.open(request, timeout=30) as response:
            status, body, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, body, headers = exc.code, exc.read(), exc.headers
    return status, body, {k.lower(): v for k, v in headers.items()}


def _attribute(html: str, before: str) -> str:
    """The double-quoted value that follows ``before`` in ``html``."""
    return html.split(before, 1)[1].split('"', 1)[0]


def _path(server: Server, url: str) -> str:
    return url.split(f":{server.http_port}", 1)[1]


def _events(client: Client, keys: dict[str, str], queue_id: str, kind: str) -> list[Json]:
    status, page, _ = client.call(
        "GET", f"/v1/events?message={queue_id}&type={kind}", key=keys["read"]
    )
    assert status == 200, page
    events: list[Json] = page["data"]
    return events


TRACKED_HTML = (
    '<html><body><p>Read <a href="https://example.com/docs?a=1&amp;b=2">the docs</a>'
    ' or <a href="mailto:help@example.test">write</a>.</p></body></html>'
)


def test_open_and_click_tracking(api: tuple[Server, Client, dict[str, str]]) -> None:
    server, client, keys = api
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(
            html=TRACKED_HTML,
            text="Read https://example.com/docs\n",
            track_opens=True,
            track_clicks=True,
        ),
        key=keys["send"],
    )
    assert status == 202, out
    msg = parsed(server.inbox("bob@example.test")[-1])
    assert msg["Message-ID"] == out["message_id"]
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html = html_part.get_content()
    # The text part is never touched; in the html, only the http(s) link is.
    assert text_part.get_content().replace("\r\n", "\n") == "Read https://example.com/docs\n"
    assert '<a href="mailto:help@example.test">' in html
    assert "https://example.com/docs" not in html
    click = _path(server, _attribute(html, '<a href="'))
    pixel = _path(server, _attribute(html, '<img src="'))
    assert click.startswith("/v1/t/c/") and pixel.startswith("/v1/t/o/")
    assert html.index('style="display:none">') < html.index("</body>")

    # The pixel: a GIF that no cache keeps, and an "opened" event for bob.
    status, body, headers = fetch(server, pixel)
    assert status == 200 and len(body) == 43 and body.startswith(b"GIF89a")
    assert headers["content-type"] == "image/gif"
    assert headers["cache-control"] == "no-store, private"
    [opened] = _events(client, keys, out["id"], "opened")
    assert opened["recipient"] == "bob@example.test"
    assert opened["detail"] == {"user_agent": "Test Mail/1.0", "ip": "127.0.0.1"}

    # The click: a 302 to the URL the message was sent with (entities undone).
    status, _, headers = fetch(server, click)
    assert status == 302
    assert headers["location"] == "https://example.com/docs?a=1&b=2"
    [clicked] = _events(client, keys, out["id"], "clicked")
    assert clicked["recipient"] == "bob@example.test"
    assert clicked["detail"]["url"] == "https://example.com/docs?a=1&b=2"
    assert clicked["detail"]["ip"] == "127.0.0.1"

    # Engagement follows delivery: the recipient's state stays "delivered".
    _, state, _ = client.call("GET", f"/v1/messages/{out['id']}", key=keys["read"])
    [rcpt] = state["recipients"]
    assert rcpt["status"] == "delivered"
    assert [e["type"] for e in rcpt["events"]][-2:] == ["opened", "clicked"]

    # A tampered link is nothing: no redirect for a click, the image (and no event) for
    # an open; nor does one kind of token pass for the other.
    assert fetch(server, click[:-2] + ("AA" if not click.endswith("AA") else "BB"))[0] == 404
    assert fetch(server, "/v1/t/c/" + pixel.rsplit("/", 1)[1])[0] == 404
    for bad in (pixel[:-2] + ("AA" if not pixel.endswith("AA") else "BB"), "/v1/t/o/x.y"):
        status, body, headers = fetch(server, bad)
        assert (status, len(body), headers["content-type"]) == (200, 43, "image/gif")
    status, body, _ = fetch(server, "/v1/t/o/" + click.rsplit("/", 1)[1])
    assert (status, len(body)) == (200, 43)
    assert len(_events(client, keys, out["id"], "opened")) == 1
    assert len(_events(client, keys, out["id"], "clicked")) == 1


def test_an_open_of_a_message_to_several_recipients_names_none(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(to=["bob@example.test", "alice@example.test"], html=TRACKED_HTML, track_opens=True),
        key=keys["send"],
    )
    assert status == 202, out
    html_part = parsed(server.inbox("alice@example.test")[-1]).get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    # Opens only: the links are as they were.
    assert '<a href="https://example.com/docs?a=1&amp;b=2">' in html
    assert fetch(server, _path(server, _attribute(html, '<img src="')))[0] == 200
    [opened] = _events(client, keys, out["id"], "opened")
    assert opened["recipient"] is None


def test_tracking_is_off_by_default_and_needs_html(
    api: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, keys = api
    status, out, _ = client.call(
        "POST", "/v1/messages", message(html=TRACKED_HTML), key=keys["send"]
    )
    assert status == 202, out
    html_part = parsed(server.inbox("bob@example.test")[-1]).get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert '<a href="https://example.com/docs?a=1&amp;b=2">' in html
    assert "/v1/t/" not in html and "<img" not in html
    # A text-only message has nothing to track: it goes out as it came.
    status, out, _ = client.call(
        "POST",
        "/v1/messages",
        message(text="See https://example.com/\n", track_opens=True, track_clicks=True),
        key=keys["send"],
    )
    assert status == 202, out
    msg = parsed(server.inbox("bob@example.test")[-1])
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "See https://example.com/\n"
