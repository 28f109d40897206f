"""The SendGrid v3 Mail Send request mapped to /v1 messages, and /v1 refusals translated to
SendGrid's error shape and field names: pure functions, no server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailwright.api.errors import ApiError
from mailwright.api.sendgrid import (
    FORBIDDEN,
    UNAUTHORIZED,
    Origin,
    SendGridRefusal,
    category_tag,
    parse_request,
    sandbox,
    sendgrid_field,
    to_messages,
    translate,
)
from mailwright.message.compose import parse_mailbox

NOW = 1_700_000_000.0
Json = dict[str, Any]


def request(**kw: Any) -> Json:
    body: Json = {
        "personalizations": [{"to": [{"email": "bob@example.test", "name": "Bob"}]}],
        "from": {"email": "alice@example.test", "name": "Alice Example"},
        "subject": "Hello",
        "content": [
            {"type": "text/plain", "value": "Plain words."},
            {"type": "text/html", "value": "<p>Hi</p>"},
        ],
    }
    body.update(kw)
    return body


def mapped(body: Json, now: float = NOW) -> list[Any]:
    return to_messages(parse_request(json.dumps(body).encode()), now=now)


def refused(body: Json, now: float = NOW) -> SendGridRefusal:
    with pytest.raises(SendGridRefusal) as info:
        mapped(body, now)
    return info.value


def fields(refusal: SendGridRefusal) -> list[str | None]:
    return [name for _, name in refusal.errors]


# --- the mapping ---------------------------------------------------------------------------


def test_a_simple_request_is_one_message() -> None:
    [item] = mapped(request())
    msg = item.message
    assert msg.sender == "Alice Example <alice@example.test>"
    assert msg.to == ["Bob <bob@example.test>"]
    assert (msg.subject, msg.text, msg.html) == ("Hello", "Plain words.", "<p>Hi</p>")
    assert msg.template_id is None and msg.tags == [] and msg.metadata == {}
    assert item.origin.text == "content.0.value" and item.origin.html == "content.1.value"


def test_each_personalization_is_a_message_with_its_own_overrides() -> None:
    body = request(
        headers={"X-Campaign": "spring", "X-Team": "ops"},
        custom_args={"user": "1", "plan": "gold"},
        personalizations=[
            {"to": [{"email": "bob@example.test"}], "subject": "For Bob"},
            {
                "to": [{"email": "carol@example.test"}],
                "cc": [{"email": "dave@example.test", "name": "Dave"}],
                "bcc": [{"email": "erin@example.test"}],
                "from": {"email": "sales@example.test"},
                "headers": {"x-campaign": "summer"},
                "custom_args": {"user": "2"},
            },
        ],
    )
    first, second = mapped(body)
    assert (
        first.message.subject == "For Bob" and first.origin.subject == "personalizations.0.subject"
    )
    assert first.message.sender == "Alice Example <alice@example.test>"
    assert first.message.headers == {"X-Campaign": "spring", "X-Team": "ops"}
    assert first.message.metadata == {"user": "1", "plan": "gold"}
    assert second.message.subject == "Hello" and second.origin.subject == "subject"
    assert second.message.sender == "sales@example.test"
    assert second.origin.sender == "personalizations.1.from.email"
    assert second.message.cc == ["Dave <dave@example.test>"]
    assert second.message.bcc == ["erin@example.test"]
    # A personalization's header replaces the request's whatever the case of its name.
    assert second.message.headers == {"X-Team": "ops", "x-campaign": "summer"}
    assert second.message.metadata == {"user": "2", "plan": "gold"}
    assert second.origin.metadata == {
        "user": "personalizations.1.custom_args",
        "plan": "custom_args",
    }


def test_a_template_takes_dynamic_data_and_substitutions_as_variables() -> None:
    body = request(
        template_id="welcome",
        personalizations=[
            {
                "to": [{"email": "bob@example.test"}],
                "subject": "ignored: the template has the subject",
                "substitutions": {"name": "from substitutions", "-code-": "x1"},
                "dynamic_template_data": {"name": "Bob", "items": [1, 2]},
            }
        ],
    )
    [item] = mapped(body)
    msg = item.message
    assert msg.template_id == "welcome"
    assert (msg.subject, msg.text, msg.html) == ("", None, None)
    assert msg.variables == {"name": "Bob", "items": [1, 2], "-code-": "x1"}
    assert item.origin.variables["name"] == "personalizations.0.dynamic_template_data"
    assert item.origin.variables["-code-"] == "personalizations.0.substitutions"
    # What the template renders is the template's: an error about it names template_id.
    assert sendgrid_field("subject", item.origin) == "template_id"
    assert sendgrid_field("html", item.origin) == "template_id"


def test_a_template_needs_neither_subject_nor_content() -> None:
    body = request(template_id="welcome")
    del body["subject"], body["content"]
    [item] = mapped(body)
    assert item.message.template_id == "welcome"


def test_legacy_substitutions_replace_tags_in_content_without_a_template() -> None:
    body = request(
        subject="Hi -name-",
        content=[{"type": "text/plain", "value": "Dear -name-, code -code-; -name-s"}],
        personalizations=[
            {
                "to": [{"email": "bob@example.test"}],
                # One pass, the longest tag first: a replaced value is not searched again.
                "substitutions": {"-name-": "Bob -code-", "-name-s": "all", "-code-": "42"},
            }
        ],
    )
    [item] = mapped(body)
    assert item.message.subject == "Hi Bob -code-"
    assert item.message.text == "Dear Bob -code-, code 42; all"


def test_categories_become_tags() -> None:
    body = request(categories=["Welcome mail", "billing", "a/b", "x" * 100, "billing", "é"])
    [item] = mapped(body)
    assert item.message.tags == ["Welcome_mail", "billing", "a_b", "x" * 64, "_"]
    assert category_tag("order:paid.v2-x_y") == "order:paid.v2-x_y"


def test_custom_args_and_asm_become_metadata() -> None:
    body = request(
        custom_args={"n": 42, "ok": True, "ratio": 1.5, "s": "text"},
        asm={"group_id": 7, "groups_to_display": [7, 8]},
    )
    [item] = mapped(body)
    assert item.message.metadata == {
        "n": "42",
        "ok": "true",
        "ratio": "1.5",
        "s": "text",
        "asm_group_id": "7",
    }
    assert item.origin.metadata["asm_group_id"] == "asm.group_id"


def test_attachments_map_to_ours() -> None:
    body = request(
        attachments=[
            {"content": "aGVsbG8=", "filename": "a.txt"},
            {
                "content": "iVBORw==",
                "filename": "logo.png",
                "type": "image/png",
                "disposition": "inline",
                "content_id": "logo",
            },
        ]
    )
    [item] = mapped(body)
    first, second = item.message.attachments
    assert (first.filename, first.content_type, first.inline, first.content_id) == (
        "a.txt",
        "application/octet-stream",
        False,
        None,
    )
    assert (second.content_type, second.inline, second.content_id) == ("image/png", True, "logo")
    assert second.content == "iVBORw=="


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Bob", "Bob <bob@example.test>"),
        ("Bob Smith", "Bob Smith <bob@example.test>"),
        ("Smith, Bob", '"Smith, Bob" <bob@example.test>'),
        ('Bob "the" Smith', '"Bob \\"the\\" Smith" <bob@example.test>'),
        ("Zoë Müller", '"Zoë Müller" <bob@example.test>'),
        ("", "bob@example.test"),
    ],
)
def test_names_are_quoted_so_the_mailbox_parses_back(name: str, expected: str) -> None:
    body = request(personalizations=[{"to": [{"email": "bob@example.test", "name": name}]}])
    [item] = mapped(body)
    [text] = item.message.to
    assert text == expected
    assert parse_mailbox(text, "to.0") == (name, "bob@example.test")


def test_reply_to_and_reply_to_list() -> None:
    [item] = mapped(request(reply_to={"email": "help@example.test", "name": "Help"}))
    assert item.message.reply_to == ["Help <help@example.test>"]
    assert item.origin.reply_to == ("reply_to.email",)
    body = request(reply_to_list=[{"email": "a@example.test"}, {"email": "b@example.test"}])
    [item] = mapped(body)
    assert item.message.reply_to == ["a@example.test", "b@example.test"]
    assert item.origin.reply_to == ("reply_to_list.0.email", "reply_to_list.1.email")


@pytest.mark.parametrize("send_at", [NOW - 3600, NOW, NOW + 60])
def test_a_send_at_in_the_past_or_within_a_minute_is_sent_now(send_at: float) -> None:
    assert len(mapped(request(send_at=int(send_at)))) == 1


# --- refusals in the mapping ---------------------------------------------------------------


def test_a_future_send_at_is_refused_not_sent_early() -> None:
    exc = refused(request(send_at=int(NOW) + 3600))
    assert exc.status == 400
    assert exc.errors == (("scheduled sending is not supported yet", "send_at"),)
    body = request(
        personalizations=[
            {"to": [{"email": "bob@example.test"}]},
            {"to": [{"email": "carol@example.test"}], "send_at": int(NOW) + 3600},
        ]
    )
    assert fields(refused(body)) == ["personalizations.1.send_at"]


@pytest.mark.parametrize(
    ("personalizations", "field"),
    [
        ([{"to": [{"email": "bob@example.test"}, {"email": "not an address"}]}], "to.1"),
        ([{"to": [{"email": "bob@example.test"}], "cc": [{"email": "x@"}]}], "cc.0"),
        ([{"to": [{"email": "Bob <bob@example.test>"}]}], "to.0"),
        ([{"to": [{"email": "a@example.test, b@example.test"}]}], "to.0"),
    ],
)
def test_an_address_that_is_not_one_is_refused_by_its_field(
    personalizations: list[Json], field: str
) -> None:
    exc = refused(request(personalizations=personalizations))
    assert exc.status == 400
    assert fields(exc) == [f"personalizations.0.{field}.email"]


def test_line_breaks_in_a_name_are_refused() -> None:
    body = request(from_={"email": "alice@example.test", "name": "A\r\nBcc: x@evil.test"})
    body["from"] = body.pop("from_")
    assert fields(refused(body)) == ["from.name"]


def test_refusals_of_the_request_itself() -> None:
    both = request(reply_to={"email": "a@example.test"}, reply_to_list=[{"email": "b@x.test"}])
    assert fields(refused(both)) == ["reply_to_list"]
    amp = request(content=[{"type": "text/x-amp-html", "value": "<p/>"}])
    assert fields(refused(amp)) == ["content.0.type"]
    twice = request(
        content=[{"type": "text/plain", "value": "a"}, {"type": "TEXT/PLAIN", "value": "b"}]
    )
    assert fields(refused(twice)) == ["content.1.type"]
    no_content = request()
    del no_content["content"]
    assert fields(refused(no_content)) == ["content"]
    no_subject = request()
    del no_subject["subject"]
    assert fields(refused(no_subject)) == ["subject"]


def test_what_our_message_model_refuses_names_the_sendgrid_field() -> None:
    body = request(
        personalizations=[{"to": [{"email": "bob@example.test"}], "custom_args": {"k": "v" * 1001}}]
    )
    assert fields(refused(body)) == ["personalizations.0.custom_args.k"]
    assert fields(refused(request(custom_args={"k" * 65: "v"}))) == ["custom_args." + "k" * 65]
    assert fields(refused(request(subject="s" * 999))) == ["subject"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", [None]),
        (json.dumps({"personalizations": [{"to": [{"email": "b@x.test"}]}]}).encode(), ["from"]),
        (json.dumps(request(colour="red")).encode(), ["colour"]),
        (
            json.dumps(request(personalizations=[{"to": [{"email": 42}]}])).encode(),
            ["personalizations.0.to.0.email"],
        ),
        (json.dumps(request(personalizations=[])).encode(), ["personalizations"]),
        (json.dumps(request(personalizations=[{"to": []}])).encode(), ["personalizations.0.to"]),
        (json.dumps(request(categories=[str(n) for n in range(11)])).encode(), ["categories"]),
        (
            json.dumps(
                request(attachments=[{"content": "eA==", "filename": "x", "disposition": "x"}])
            ).encode(),
            ["attachments.0.disposition"],
        ),
        (json.dumps(request(send_at="tomorrow")).encode(), ["send_at"]),
    ],
)
def test_a_malformed_request_is_a_400_naming_each_field(
    raw: bytes, expected: list[str | None]
) -> None:
    with pytest.raises(SendGridRefusal) as info:
        parse_request(raw)
    assert info.value.status == 400
    assert fields(info.value) == expected


def test_every_problem_is_listed() -> None:
    body = {"personalizations": [{"to": [{}]}], "subject": 1}
    with pytest.raises(SendGridRefusal) as info:
        parse_request(json.dumps(body).encode())
    assert set(fields(info.value)) == {"personalizations.0.to.0.email", "from", "subject"}


def test_sandbox_mode() -> None:
    assert sandbox(parse_request(json.dumps(request()).encode())) is False
    on = request(mail_settings={"sandbox_mode": {"enable": True}, "footer": {"enable": False}})
    assert sandbox(parse_request(json.dumps(on).encode())) is True
    quoted = request(mail_settings={"sandbox_mode": {"enable": "true"}})
    with pytest.raises(SendGridRefusal) as info:
        sandbox(parse_request(json.dumps(quoted).encode()))
    assert fields(info.value) == ["mail_settings.sandbox_mode.enable"]


def test_ignored_settings_are_accepted() -> None:
    body = request(
        batch_id="b1",
        ip_pool_name="pool",
        sections={"-s-": "x"},
        tracking_settings={"click_tracking": {"enable": True}},
        mail_settings={"bypass_list_management": {"enable": False}},
    )
    assert len(mapped(body)) == 1


# --- translating /v1 refusals --------------------------------------------------------------

ORIGIN = Origin(
    index=2,
    sender="personalizations.2.from.email",
    reply_to=("reply_to_list.0.email", "reply_to_list.1.email"),
    subject="subject",
    text="content.0.value",
    html="content.1.value",
    own_headers=frozenset({"x-own"}),
    variables={"name": "personalizations.2.substitutions"},
    metadata={"user": "custom_args", "asm_group_id": "asm.group_id"},
)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (None, None),
        ("from", "personalizations.2.from.email"),
        ("to", "personalizations.2.to"),
        ("to.3", "personalizations.2.to.3.email"),
        ("cc.0", "personalizations.2.cc.0.email"),
        ("bcc.1", "personalizations.2.bcc.1.email"),
        ("reply_to.1", "reply_to_list.1.email"),
        ("reply_to.9", "reply_to"),
        ("subject", "subject"),
        ("text", "content.0.value"),
        ("html", "content.1.value"),
        ("attachments.1.content_type", "attachments.1.type"),
        ("attachments.0.content", "attachments.0.content"),
        ("attachments.0.content_id", "attachments.0.content_id"),
        ("attachments.0.filename", "attachments.0.filename"),
        ("attachments.x", "attachments"),
        ("headers.X-Own", "personalizations.2.headers.X-Own"),
        ("headers.Received", "headers.Received"),
        ("headers", "headers"),
        ("template_id", "template_id"),
        ("variables.name", "personalizations.2.substitutions.name"),
        ("variables.plan", "personalizations.2.dynamic_template_data.plan"),
        ("tags.3", "categories"),
        ("metadata.user", "custom_args.user"),
        ("metadata.asm_group_id", "asm.group_id"),
        ("metadata", "custom_args"),
        ("message_id", "personalizations.2"),
    ],
)
def test_our_fields_are_named_as_sendgrid_names_them(ours: str | None, theirs: str | None) -> None:
    assert sendgrid_field(ours, ORIGIN) == theirs


@pytest.mark.parametrize(
    ("error", "status", "message", "field"),
    [
        (
            ApiError(422, "invalid_address", "to.1: not a valid address", "to.1"),
            400,
            "not a valid address",
            "personalizations.2.to.1.email",
        ),
        (
            ApiError(422, "foreign_sender", "from: x.test is not a domain of this server", "from"),
            403,
            "x.test is not a domain of this server",
            "personalizations.2.from.email",
        ),
        (
            ApiError(403, "forbidden_sender", "this key may send only from a.test", "from"),
            403,
            "this key may send only from a.test",
            "personalizations.2.from.email",
        ),
        (
            ApiError(422, "missing_variable", "variables.plan: missing variable", "variables.plan"),
            400,
            "missing variable",
            "personalizations.2.dynamic_template_data.plan",
        ),
        (ApiError(413, "too_large", "the message is 9 bytes; the limit is 8"), 413, None, None),
        (ApiError(503, "unavailable", "try again"), 503, "try again", None),
    ],
)
def test_our_refusals_in_sendgrid_shape(
    error: ApiError, status: int, message: str | None, field: str | None
) -> None:
    out = translate(error, ORIGIN)
    assert out.status == status
    [(got_message, got_field)] = out.errors
    assert got_message == (message or error.message)
    assert got_field == field
    assert out.body() == {"errors": [{"message": got_message, "field": field, "help": None}]}


def test_the_fixed_texts_are_sendgrids() -> None:
    # Applications written for SendGrid may look for these.
    assert UNAUTHORIZED == "The provided authorization grant is invalid, expired, or revoked"
    assert FORBIDDEN == "access forbidden"
