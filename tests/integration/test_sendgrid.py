"""SendGrid's v3 Mail Send request on a running server, driven by the official ``sendgrid``
library from PyPI, unmodified: only its host and key are ours. Each refusal is checked for
SendGrid's status and error shape, and for sending nothing."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Attachment,
    Category,
    Cc,
    Content,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    GroupId,
    Header,
    Mail,
    MailSettings,
    Personalization,
    SandBoxMode,
    SendAt,
    To,
)

from tests.integration.server import Server, mailwright

Keys = dict[str, str]


def make_key(server: Server, *args: str) -> str:
    out = mailwright("apikey", "create", *args, config=server.config)
    return out.splitlines()[0].strip()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Keys]]:
    root: Path = tmp_path_factory.mktemp("sendgrid")
    server = Server.create(root / "mw", users=("alice@example.test", "bob@example.test"))
    keys = {
        "send": make_key(server, "--scope", "send"),
        "read": make_key(server, "--scope", "read"),
        "manage": make_key(server, "--scope", "manage"),
    }
    server.start()
    try:
        yield server, keys
    finally:
        server.close()


def client(server: Server, key: str) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=key, host=f"http://127.0.0.1:{server.http_port}")


def v1(server: Server, method: str, path: str, key: str, body: object = None) -> tuple[int, Any]:
    """Our own /v1 API, for what the SendGrid request cannot show (templates, tags)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method
    )
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def append(message: Mail, personalization: Personalization) -> None:
    # The library puts a personalization first unless told where: keep the written order.
    message.add_personalization(personalization, index=len(message.personalizations or []))


def counts(server: Server) -> tuple[int, int]:
    return len(server.inbox("alice@example.test")), len(server.inbox("bob@example.test"))


def errors(exc: HTTPError) -> list[dict[str, Any]]:
    body = json.loads(exc.body)
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert set(error) == {"message", "field", "help"}
    result: list[dict[str, Any]] = body["errors"]
    return result


def test_a_simple_send(env: tuple[Server, Keys]) -> None:
    server, keys = env
    before = len(server.inbox("bob@example.test"))
    message = Mail(
        from_email=From("alice@example.test", "Alice Example"),
        to_emails=To("bob@example.test", "Bob"),
        subject="Hello from SendGrid code",
        plain_text_content="Plain words.",
        html_content="<p>Hi <b>Bob</b></p>",
    )
    response = client(server, keys["send"]).send(message)
    assert response.status_code == 202
    assert response.body == b""
    queue_id = response.headers["X-Message-Id"]
    assert queue_id
    inbox = server.inbox("bob@example.test")
    assert len(inbox) == before + 1
    msg = parsed(inbox[-1])
    assert msg["From"] == "Alice Example <alice@example.test>"
    assert msg["To"] == "Bob <bob@example.test>"
    assert msg["Subject"] == "Hello from SendGrid code"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == "Plain words.\n"
    assert html is not None and "<b>Bob</b>" in html.get_content()
    status, state = v1(server, "GET", f"/v1/messages/{queue_id}", keys["read"])
    assert status == 200, state
    assert [(r["email"], r["status"]) for r in state["recipients"]] == [
        ("bob@example.test", "delivered")
    ]


def test_personalizations_with_a_template_are_one_message_each(
    env: tuple[Server, Keys],
) -> None:
    server, keys = env
    status, made = v1(
        server,
        "POST",
        "/v1/templates",
        keys["manage"],
        {
            "id": "sg-welcome",
            "subject": "{{ subject }}",
            "text": "Hello {{ name }}, your plan is {{ plan }}.",
            "html": "<p>Hello {{ name }}</p>",
        },
    )
    assert status == 201, made
    alice, bob = counts(server)
    message = Mail(from_email="alice@example.test")
    message.template_id = "sg-welcome"
    for address, data in (
        ("bob@example.test", {"subject": "Welcome, Bob", "name": "Bob", "plan": "gold"}),
        ("alice@example.test", {"subject": "Welcome, Alice", "name": "Alice", "plan": "free"}),
    ):
        p = Personalization()
        p.add_to(To(address))
        p.dynamic_template_data = data
        append(message, p)
    response = client(server, keys["send"]).send(message)
    assert response.status_code == 202
    assert counts(server) == (alice + 1, bob + 1)
    to_bob = parsed(server.inbox("bob@example.test")[-1])
    to_alice = parsed(server.inbox("alice@example.test")[-1])
    assert (to_bob["Subject"], to_alice["Subject"]) == ("Welcome, Bob", "Welcome, Alice")
    assert to_bob["To"] == "bob@example.test" and to_alice["To"] == "alice@example.test"
    bob_text = to_bob.get_body(("plain",))
    alice_text = to_alice.get_body(("plain",))
    assert bob_text is not None and "Hello Bob, your plan is gold." in bob_text.get_content()
    assert alice_text is not None and "Hello Alice, your plan is free." in alice_text.get_content()
    # X-Message-Id names the first personalization's message.
    status, state = v1(
        server, "GET", f"/v1/messages/{response.headers['X-Message-Id']}", keys["read"]
    )
    assert status == 200 and [r["email"] for r in state["recipients"]] == ["bob@example.test"]


def test_attachments_and_an_inline_image(env: tuple[Server, Keys]) -> None:
    server, keys = env
    pdf = bytes(range(256)) * 10
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    message = Mail(
        from_email="alice@example.test",
        to_emails="bob@example.test",
        subject="Files",
        html_content='<p>Logo: <img src="cid:logo@x"></p>',
    )
    message.add_attachment(
        Attachment(
            FileContent(base64.b64encode(pdf).decode()),
            FileName("report.pdf"),
            FileType("application/pdf"),
            Disposition("attachment"),
        )
    )
    message.add_attachment(
        Attachment(
            FileContent(base64.b64encode(png).decode()),
            FileName("logo.png"),
            FileType("image/png"),
            Disposition("inline"),
            ContentId("logo@x"),
        )
    )
    assert client(server, keys["send"]).send(message).status_code == 202
    msg = parsed(server.inbox("bob@example.test")[-1])
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert parts["report.pdf"].get_content() == pdf
    assert parts["report.pdf"].get_content_disposition() == "attachment"
    assert parts["logo.png"].get_content() == png
    assert parts["logo.png"]["Content-ID"] == "<logo@x>"
    assert parts["logo.png"].get_content_disposition() == "inline"


def test_categories_custom_args_asm_and_headers(env: tuple[Server, Keys]) -> None:
    server, keys = env
    message = Mail(
        from_email="alice@example.test",
        to_emails=To("bob@example.test"),
        subject="Tagged",
        plain_text_content="x",
    )
    message.category = [Category("Welcome mail"), Category("billing")]
    message.custom_arg = [CustomArg("user_id", "42"), CustomArg("plan", "gold")]
    message.asm = Asm(GroupId(7))
    message.header = Header("X-Campaign", "spring")
    message.add_cc(Cc("alice@example.test", "Alice"))
    response = client(server, keys["send"]).send(message)
    assert response.status_code == 202
    status, state = v1(
        server, "GET", f"/v1/messages/{response.headers['X-Message-Id']}", keys["read"]
    )
    assert status == 200, state
    assert sorted(state["tags"]) == ["Welcome_mail", "billing"]
    assert state["metadata"] == {"user_id": "42", "plan": "gold", "asm_group_id": "7"}
    msg = parsed(server.inbox("bob@example.test")[-1])
    assert msg["X-Campaign"] == "spring"
    assert msg["Cc"] == "Alice <alice@example.test>"


def test_a_bad_address_is_a_400_and_nothing_is_sent(env: tuple[Server, Keys]) -> None:
    server, keys = env
    before = counts(server)
    message = Mail(from_email="alice@example.test", subject="Never", plain_text_content="x")
    good, bad = Personalization(), Personalization()
    good.add_to(To("bob@example.test"))
    bad.add_to(To("alice@example.test"))
    bad.add_to(To("bo b@example.test"))
    append(message, good)
    append(message, bad)
    with pytest.raises(BadRequestsError) as info:
        client(server, keys["send"]).send(message)
    assert info.value.status_code == 400
    [error] = errors(info.value)
    assert error["field"] == "personalizations.1.to.1.email"
    assert error["help"] is None
    assert counts(server) == before


def test_a_later_personalization_that_would_fail_stops_the_whole_request(
    env: tuple[Server, Keys],
) -> None:
    server, keys = env
    before = counts(server)
    # The first is fine; the second names only an unknown local user, which the pipeline
    # would refuse at the commit: found beforehand, so the first is not sent either.
    message = Mail(from_email="alice@example.test", subject="Never", plain_text_content="x")
    for address in ("bob@example.test", "nobody@example.test"):
        p = Personalization()
        p.add_to(To(address))
        append(message, p)
    with pytest.raises(BadRequestsError) as info:
        client(server, keys["send"]).send(message)
    [error] = errors(info.value)
    assert error["field"] == "personalizations.1.to"
    assert counts(server) == before


def test_a_bad_key_is_a_401(env: tuple[Server, Keys]) -> None:
    server, _keys = env
    message = Mail("alice@example.test", "bob@example.test", "Never", "x")
    with pytest.raises(UnauthorizedError) as info:
        client(server, "mw_not_a_key").send(message)
    assert info.value.status_code == 401
    assert errors(info.value) == [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]


def test_a_key_without_the_send_scope_is_a_403(env: tuple[Server, Keys]) -> None:
    server, keys = env
    before = counts(server)
    message = Mail("alice@example.test", "bob@example.test", "Never", "x")
    with pytest.raises(ForbiddenError) as info:
        client(server, keys["read"]).send(message)
    assert info.value.status_code == 403
    assert [e["field"] for e in errors(info.value)] == [None]
    assert counts(server) == before


def test_a_sender_of_another_domain_is_a_403(env: tuple[Server, Keys]) -> None:
    server, keys = env
    message = Mail("someone@elsewhere.test", "bob@example.test", "Never", "x")
    with pytest.raises(ForbiddenError) as info:
        client(server, keys["send"]).send(message)
    assert [e["field"] for e in errors(info.value)] == ["from.email"]


def test_a_future_send_at_is_refused_not_sent_early(env: tuple[Server, Keys]) -> None:
    server, keys = env
    before = counts(server)
    message = Mail("alice@example.test", "bob@example.test", "Later", "x")
    message.send_at = SendAt(int(time.time()) + 3600)
    with pytest.raises(BadRequestsError) as info:
        client(server, keys["send"]).send(message)
    [error] = errors(info.value)
    assert error["field"] == "send_at"
    assert "not supported" in error["message"]
    assert counts(server) == before
    # A send_at already past is sent now.
    message.send_at = SendAt(int(time.time()) - 10)
    assert client(server, keys["send"]).send(message).status_code == 202
    assert counts(server) == (before[0], before[1] + 1)


def test_sandbox_mode_checks_and_sends_nothing(env: tuple[Server, Keys]) -> None:
    server, keys = env
    before = counts(server)
    message = Mail("alice@example.test", "bob@example.test", "Sandbox", Content("text/plain", "x"))
    message.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    response = client(server, keys["send"]).send(message)
    assert response.status_code == 200
    assert counts(server) == before
    message.add_to(To("bo b@example.test"))
    with pytest.raises(BadRequestsError):
        client(server, keys["send"]).send(message)
