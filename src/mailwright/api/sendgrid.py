"""SendGrid's v3 Mail Send request (``POST /v3/mail/send``) on top of the sending API, so an
application written for SendGrid's client libraries changes only the host and the key.

Each element of ``personalizations`` becomes one :class:`MessageIn`, sent by the same
:class:`Sender` as ``POST /v1/messages``; ``docs/sendgrid.md`` lists what is mapped, what is
ignored and where the two differ.

Invariants:
- every personalization is mapped and checked (addresses, the sender's domain, recipients
  that route, the template and its variables, the MIME message, its size) before the first
  is sent, so a request refused for its third personalization sends nothing;
- every answer has SendGrid's shape: 202 with an empty body and ``X-Message-Id``, 200 with
  an empty body in sandbox mode (checked, nothing sent), and errors as
  ``{"errors": [{"message", "field", "help"}]}`` with SendGrid's statuses (400 where /v1
  says 422). Nothing raised here reaches the application's /v1 error handlers;
- a field named in an error is SendGrid's path (``personalizations.0.to.1.email``), never
  the /v1 one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeAlias

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from mailwright.api.auth import authenticated
from mailwright.api.errors import ApiError
from mailwright.api.models import MessageIn
from mailwright.api.send import Sender
from mailwright.core.address import Address, AddressError
from mailwright.core.errors import MailwrightError
from mailwright.core.log import event as log_event
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.api")

# SendGrid's own limits on a Mail Send request (its API reference, "Mail Send").
MAX_PERSONALIZATIONS = 1000
MAX_CATEGORIES = 10
MAX_CATEGORY = 255
MAX_ASM_GROUPS = 25
# A send_at this close to now is sent now: clocks differ, and a request built a few seconds
# ago for "now" must not be refused as a scheduled send.
SEND_AT_SLACK = 60.0
MAX_ERRORS = 20  # of pydantic's, in one answer

# The texts SendGrid answers with, which applications may look for.
UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"
FORBIDDEN = "access forbidden"

_TEXT, _HTML = "text/plain", "text/html"
# A category becomes a tag (^[A-Za-z0-9_.:-]+$, at most 64): anything else becomes "_".
_NOT_TAG = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_TAG = 64
# A display name made only of atext and spaces needs no quotes (RFC 5322 §3.2.3, §3.2.5).
_PLAIN_PHRASE = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*"
)
_BREAKS = re.compile(r"[\r\n\x00]")
# /v1 attachment fields under their SendGrid names.
_ATTACHMENT_FIELDS = {
    "content": "content",
    "content_type": "type",
    "filename": "filename",
    "inline": "disposition",
    "content_id": "content_id",
}
ASM_KEY = "asm_group_id"


# --- the request -------------------------------------------------------------------------


class _Model(BaseModel):
    # Unknown fields are refused, as in /v1: a misspelt option is a 400 naming it rather
    # than a setting silently not applied.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


CustomValue: TypeAlias = StrictStr | StrictBool | StrictInt | StrictFloat


class SendGridAddress(_Model):
    email: StrictStr
    name: StrictStr | None = None


class SendGridPersonalization(_Model):
    to: Annotated[list[SendGridAddress], Field(min_length=1, max_length=1000)]
    cc: Annotated[list[SendGridAddress], Field(max_length=1000)] = Field(default_factory=list)
    bcc: Annotated[list[SendGridAddress], Field(max_length=1000)] = Field(default_factory=list)
    sender: SendGridAddress | None = Field(default=None, alias="from")
    subject: Annotated[StrictStr, Field(min_length=1)] | None = None
    headers: dict[str, StrictStr] = Field(default_factory=dict)
    substitutions: dict[str, StrictStr] = Field(default_factory=dict)
    dynamic_template_data: dict[str, Any] = Field(default_factory=dict)
    custom_args: dict[str, CustomValue] = Field(default_factory=dict)
    send_at: StrictInt | None = None


class SendGridContent(_Model):
    type: Annotated[StrictStr, Field(min_length=1)]
    value: Annotated[StrictStr, Field(min_length=1)]


class SendGridAttachment(_Model):
    content: Annotated[StrictStr, Field(min_length=1)]
    type: Annotated[StrictStr, Field(min_length=1)] | None = None
    filename: StrictStr
    disposition: Literal["attachment", "inline"] = "attachment"
    content_id: StrictStr | None = None


class SendGridAsm(_Model):
    group_id: StrictInt
    groups_to_display: Annotated[list[StrictInt], Field(max_length=MAX_ASM_GROUPS)] = Field(
        default_factory=list
    )


class SendGridMail(_Model):
    personalizations: Annotated[
        list[SendGridPersonalization], Field(min_length=1, max_length=MAX_PERSONALIZATIONS)
    ]
    sender: SendGridAddress = Field(alias="from")
    reply_to: SendGridAddress | None = None
    reply_to_list: Annotated[list[SendGridAddress], Field(max_length=1000)] = Field(
        default_factory=list
    )
    subject: Annotated[StrictStr, Field(min_length=1)] | None = None
    content: list[SendGridContent] = Field(default_factory=list)
    attachments: list[SendGridAttachment] = Field(default_factory=list)
    template_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    headers: dict[str, StrictStr] = Field(default_factory=dict)
    categories: Annotated[
        list[Annotated[StrictStr, Field(max_length=MAX_CATEGORY)]],
        Field(max_length=MAX_CATEGORIES),
    ] = Field(default_factory=list)
    custom_args: dict[str, CustomValue] = Field(default_factory=dict)
    send_at: StrictInt | None = None
    asm: SendGridAsm | None = None
    # Accepted and ignored (docs/sendgrid.md), apart from mail_settings.sandbox_mode.
    sections: dict[str, StrictStr] = Field(default_factory=dict)
    batch_id: StrictStr | None = None
    ip_pool_name: StrictStr | None = None
    mail_settings: dict[str, Any] = Field(default_factory=dict)
    tracking_settings: dict[str, Any] = Field(default_factory=dict)


# --- errors ------------------------------------------------------------------------------


class SendGridRefusal(MailwrightError):
    """A refusal in SendGrid's shape: the status and one or more (message, field) pairs."""

    def __init__(self, status: int, errors: Sequence[tuple[str, str | None]]) -> None:
        super().__init__("; ".join(message for message, _ in errors))
        self.status = status
        self.errors = tuple(errors)

    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {"message": message, "field": name, "help": None} for message, name in self.errors
            ]
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _refuse(message: str, name: str | None, status: int = 400) -> SendGridRefusal:
    return SendGridRefusal(status, [(message, name)])


def from_pydantic(errors: Sequence[Any]) -> SendGridRefusal:
    """pydantic's errors about the request as a 400 naming each field, SendGrid's way (it
    lists every problem it found, not only the first)."""
    out: list[tuple[str, str | None]] = []
    for error in errors[:MAX_ERRORS]:
        kind = error.get("type", "")
        if kind == "json_invalid":
            out.append(("the body is not valid JSON", None))
            continue
        path = _pydantic_path(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if kind == "missing":
            message = "required"
        elif kind == "extra_forbidden":
            message = "unknown field"
        out.append((message, path or None))
    if not out:
        out.append(("the request is not valid", None))
    return SendGridRefusal(400, out)


def _pydantic_path(loc: Sequence[int | str]) -> str:
    # A dict key's own error is located at (..., key, "[key]"): the key is the field.
    parts = [str(p) for p in loc if p != "[key]"]
    return ".".join(parts)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where each part of one message came from in the request: an error about the message
    names SendGrid's field, not ours."""

    index: int
    sender: str = "from.email"
    reply_to: tuple[str, ...] = ()
    subject: str = "subject"
    text: str = "content"
    html: str = "content"
    # Lower-cased names of the headers this personalization set itself.
    own_headers: frozenset[str] = frozenset()
    # Variable name → the field it came from (dynamic_template_data or substitutions).
    variables: dict[str, str] = field(default_factory=dict)
    # Metadata key → the field it came from (custom_args at either level, or asm).
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def personalization(self) -> str:
        return f"personalizations.{self.index}"


def sendgrid_field(ours: str | None, origin: Origin) -> str | None:
    """A /v1 field path (``to.0``, ``headers.X-Foo``, ``attachments.1.content_type``) as the
    SendGrid field it came from."""
    if ours is None:
        return None
    head, _, rest = ours.partition(".")
    here = origin.personalization
    if head in ("to", "cc", "bcc"):
        index = rest.partition(".")[0]
        return f"{here}.{head}.{index}.email" if index.isdigit() else f"{here}.{head}"
    if head == "from":
        return origin.sender
    if head == "reply_to":
        index = rest.partition(".")[0]
        if index.isdigit() and int(index) < len(origin.reply_to):
            return origin.reply_to[int(index)]
        return "reply_to"
    if head == "subject":
        return origin.subject
    if head == "text":
        return origin.text
    if head == "html":
        return origin.html
    if head == "attachments":
        index, _, part = rest.partition(".")
        if not index.isdigit():
            return "attachments"
        name = _ATTACHMENT_FIELDS.get(part.partition(".")[0])
        return f"attachments.{index}.{name}" if name else f"attachments.{index}"
    if head == "headers":
        where = f"{here}.headers" if rest.lower() in origin.own_headers else "headers"
        return f"{where}.{rest}" if rest else where
    if head == "template_id":
        return "template_id"
    if head == "variables":
        source = origin.variables.get(rest, f"{here}.dynamic_template_data")
        return f"{source}.{rest}" if rest else source
    if head == "tags":
        # Categories are renamed, merged and deduplicated on the way: their index is not ours.
        return "categories"
    if head == "metadata":
        key = rest
        if key not in origin.metadata:
            return "custom_args"
        source = origin.metadata[key]
        return source if key == ASM_KEY else f"{source}.{key}"
    return here


def translate(exc: ApiError, origin: Origin) -> SendGridRefusal:
    """A refusal from the /v1 sending path as SendGrid would answer: 400 where /v1 says 422,
    403 for a sender this server does not send for (SendGrid's "verified sender" refusal),
    and the field as SendGrid names it."""
    status = exc.status
    if exc.type == "foreign_sender":
        status = 403
    elif status == 422:
        status = 400
    message = exc.message
    if exc.field is not None and message.startswith(f"{exc.field}: "):
        # Our messages lead with our field path; SendGrid's name the field apart.
        message = message[len(exc.field) + 2 :]
    return _refuse(message, sendgrid_field(exc.field, origin), status)


# --- the mapping -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Personalized:
    message: MessageIn
    origin: Origin


def parse_request(raw: bytes) -> SendGridMail:
    try:
        return SendGridMail.model_validate_json(raw)
    except ValidationError as exc:
        raise from_pydantic(exc.errors()) from None


def sandbox(mail: SendGridMail) -> bool:
    """Whether mail_settings.sandbox_mode.enable is true: check, answer 200, send nothing.
    Honoured rather than ignored: an application asking for a dry run must not send."""
    setting = mail.mail_settings.get("sandbox_mode")
    if setting is None:
        return False
    if not isinstance(setting, dict):
        raise _refuse("must be an object", "mail_settings.sandbox_mode")
    enable = setting.get("enable", False)
    if not isinstance(enable, bool):
        raise _refuse("must be a boolean", "mail_settings.sandbox_mode.enable")
    return enable


def mailbox(address: SendGridAddress, name: str) -> str:
    """``{"email", "name"}`` as ``"Name <email>"`` (the name quoted when it must be); the
    email must be a bare address, and CR, LF and NUL are refused here, where they enter."""
    try:
        Address.parse(address.email, utf8=True)
    except AddressError:
        raise _refuse("does not contain a valid address", f"{name}.email") from None
    display = address.name
    if not display:
        return address.email
    if _BREAKS.search(display):
        raise _refuse("CR, LF and NUL are not allowed in a name", f"{name}.name")
    if not _PLAIN_PHRASE.fullmatch(display):
        display = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{display} <{address.email}>"


def category_tag(category: str) -> str:
    """A category as a tag: characters a tag may not hold become "_", at most 64 of them."""
    return _NOT_TAG.sub("_", category)[:MAX_TAG]


def _custom_value(value: str | bool | int | float) -> str:
    # SendGrid documents string values; numbers and booleans are kept as their JSON text.
    return value if isinstance(value, str) else json.dumps(value)


def _substitute(text: str | None, substitutions: dict[str, str]) -> str | None:
    """Legacy substitution tags replaced in one pass (a replaced value is not searched
    again), the longest tag first where tags overlap."""
    tags = sorted((t for t in substitutions if t), key=len, reverse=True)
    if text is None or not tags:
        return text
    pattern = re.compile("|".join(re.escape(t) for t in tags))
    return pattern.sub(lambda m: substitutions[m.group(0)], text)


def _merge_headers(
    top: dict[str, str], own: dict[str, str]
) -> tuple[dict[str, str], frozenset[str]]:
    # Header names are case-insensitive (RFC 5322 §1.2.2): a personalization's X-Foo
    # replaces the request's x-foo rather than adding a second field.
    replaced = _lower(own)
    merged = {name: value for name, value in top.items() if name.lower() not in replaced}
    merged.update(own)
    return merged, replaced


def _lower(names: Iterable[str]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


def _contents(mail: SendGridMail) -> tuple[tuple[str | None, str], tuple[str | None, str]]:
    """(text, its field), (html, its field) from the content blocks."""
    text: tuple[str | None, str] = (None, "content")
    html: tuple[str | None, str] = (None, "content")
    for k, block in enumerate(mail.content):
        kind = block.type.strip().lower()
        if kind not in (_TEXT, _HTML):
            raise _refuse(
                f"content type {block.type!r} is not supported: use text/plain or text/html",
                f"content.{k}.type",
            )
        current = text if kind == _TEXT else html
        if current[0] is not None:
            raise _refuse(f"a second {kind} content block", f"content.{k}.type")
        if kind == _TEXT:
            text = (block.value, f"content.{k}.value")
        else:
            html = (block.value, f"content.{k}.value")
    return text, html


def to_messages(mail: SendGridMail, *, now: float) -> list[Personalized]:
    """One /v1 message per personalization, each with where its parts came from; refuses
    (400) what SendGrid refuses and what is not supported yet (a future send_at)."""
    if mail.reply_to is not None and mail.reply_to_list:
        raise _refuse("use reply_to or reply_to_list, not both", "reply_to_list")
    (text, text_field), (html, html_field) = _contents(mail)
    templated = mail.template_id is not None
    if not templated and text is None and html is None:
        raise _refuse("content is required unless a template_id is given", "content")
    if mail.reply_to is not None:
        reply_to = [mailbox(mail.reply_to, "reply_to")]
        reply_fields: tuple[str, ...] = ("reply_to.email",)
    else:
        reply_to = [mailbox(a, f"reply_to_list.{k}") for k, a in enumerate(mail.reply_to_list)]
        reply_fields = tuple(f"reply_to_list.{k}.email" for k in range(len(reply_to)))
    default_sender = mailbox(mail.sender, "from")
    attachments = [
        {
            "filename": a.filename,
            "content": a.content,
            "content_type": a.type or "application/octet-stream",
            "inline": a.disposition == "inline",
            "content_id": a.content_id,
        }
        for a in mail.attachments
    ]
    tags = list(dict.fromkeys(t for t in (category_tag(c) for c in mail.categories) if t))

    out: list[Personalized] = []
    for i, p in enumerate(mail.personalizations):
        here = f"personalizations.{i}"
        send_at, send_at_field = (
            (p.send_at, f"{here}.send_at") if p.send_at is not None else (mail.send_at, "send_at")
        )
        if send_at is not None and send_at > now + SEND_AT_SLACK:
            raise _refuse("scheduled sending is not supported yet", send_at_field)
        sender, sender_field = default_sender, "from.email"
        if p.sender is not None:
            sender, sender_field = mailbox(p.sender, f"{here}.from"), f"{here}.from.email"
        subject, subject_field = (
            (p.subject, f"{here}.subject") if p.subject is not None else (mail.subject, "subject")
        )
        if not templated and subject is None:
            raise _refuse(
                "a subject is required (here or in every personalization) unless a template_id "
                "is given",
                "subject",
            )
        headers, own_headers = _merge_headers(mail.headers, p.headers)
        metadata = {k: _custom_value(v) for k, v in mail.custom_args.items()}
        metadata_origin = dict.fromkeys(metadata, "custom_args")
        for k, v in p.custom_args.items():
            metadata[k] = _custom_value(v)
            metadata_origin[k] = f"{here}.custom_args"
        if mail.asm is not None:
            # Suppression groups do not exist yet: the group is kept with the message.
            metadata[ASM_KEY] = str(mail.asm.group_id)
            metadata_origin[ASM_KEY] = "asm.group_id"
        body: dict[str, Any] = {
            "from": sender,
            "to": [mailbox(a, f"{here}.to.{k}") for k, a in enumerate(p.to)],
            "cc": [mailbox(a, f"{here}.cc.{k}") for k, a in enumerate(p.cc)],
            "bcc": [mailbox(a, f"{here}.bcc.{k}") for k, a in enumerate(p.bcc)],
            "reply_to": reply_to,
            "attachments": attachments,
            "headers": headers,
            "tags": tags,
            "metadata": metadata,
        }
        variables_origin: dict[str, str] = {}
        parts = (subject_field, text_field, html_field)
        if templated:
            # The template gives subject, text and html (SendGrid: a template overrides
            # them); substitutions and dynamic_template_data become its variables.
            body["template_id"] = mail.template_id
            body["variables"] = {**p.substitutions, **p.dynamic_template_data}
            variables_origin = {
                **dict.fromkeys(p.substitutions, f"{here}.substitutions"),
                **dict.fromkeys(p.dynamic_template_data, f"{here}.dynamic_template_data"),
            }
            # A rendered part the message cannot carry is the template's fault.
            parts = ("template_id", "template_id", "template_id")
        else:
            body["subject"] = _substitute(subject, p.substitutions)
            body["text"] = _substitute(text, p.substitutions)
            body["html"] = _substitute(html, p.substitutions)
        origin = Origin(
            index=i,
            sender=sender_field,
            reply_to=reply_fields,
            subject=parts[0],
            text=parts[1],
            html=parts[2],
            own_headers=own_headers,
            variables=variables_origin,
            metadata=metadata_origin,
        )
        try:
            message = MessageIn.model_validate(body)
        except ValidationError as exc:
            raise SendGridRefusal(
                400,
                [
                    (str(e.get("msg", "invalid")), sendgrid_field(_pydantic_path(e["loc"]), origin))
                    for e in exc.errors()[:MAX_ERRORS]
                ],
            ) from None
        out.append(Personalized(message, origin))
    return out


# --- the route ---------------------------------------------------------------------------


def sendgrid_routes(*, clock: Callable[[], float] = time.time) -> APIRouter:
    """``POST /v3/mail/send``; ``clock`` (Unix seconds) decides whether a send_at is past."""
    router = APIRouter(tags=["sendgrid"])

    @router.post(
        "/v3/mail/send",
        status_code=202,
        response_class=Response,
        responses={
            200: {"description": "sandbox mode: the request is valid; nothing was sent"},
            202: {"description": "accepted: X-Message-Id is the first message's queue id"},
            400: {"description": 'SendGrid\'s {"errors": [...]}'},
            401: {"description": "no key, or an unknown one"},
            403: {"description": "a key without the send scope, or a sender it may not use"},
            413: {"description": "the request or a message is too large"},
        },
    )
    async def mail_send(request: Request) -> Response:
        """SendGrid's v3 Mail Send request: one message per personalization, all checked
        before any is sent. Answers with SendGrid's statuses and error shape."""
        try:
            return await _mail_send(request, clock)
        except SendGridRefusal as exc:
            return exc.response()
        except StoreError as exc:
            log_event(log, logging.ERROR, "api.store_failed", path=request.url.path, error=str(exc))
            return _refuse("storage is unavailable; try again", None, 503).response()

    return router


async def _mail_send(request: Request, clock: Callable[[], float]) -> Response:
    max_batch: int = request.app.state.services.max_batch
    try:
        key = await authenticated(request, request.headers.get("authorization"))
    except ApiError:
        raise _refuse(UNAUTHORIZED, None, 401) from None
    if "send" not in key.scopes:
        raise _refuse(FORBIDDEN, None, 403)
    try:
        raw = await request.body()
    except ApiError as exc:  # the body limit, counted as the body streams in
        raise _refuse(exc.message, None, exc.status) from None
    mail = parse_request(raw)
    if len(mail.personalizations) > max_batch:
        raise _refuse(
            f"at most {max_batch} personalizations in one request on this server",
            "personalizations",
        )
    dry_run = sandbox(mail)
    messages = to_messages(mail, now=clock())
    sender: Sender = request.app.state.sender
    # Every personalization is checked (and built) before any is sent.
    prepared = []
    for item in messages:
        try:
            prepared.append(await sender.prepare(key, item.message))
        except ApiError as exc:
            raise translate(exc, item.origin) from None
    if dry_run:
        return Response(status_code=200)
    ids: list[str] = []
    for item, ready in zip(messages, prepared, strict=True):
        try:
            _status, out = await sender.commit(ready)
        except ApiError as exc:
            refusal = translate(exc, item.origin)
            if ids:
                # Only the commit can refuse now (full mailboxes, an outage): say what was
                # sent already, since SendGrid's answer has no room for a partial success.
                log_event(
                    log,
                    logging.WARNING,
                    "api.sendgrid_partial",
                    key=key.prefix,
                    sent=",".join(ids),
                    failed=item.origin.index,
                )
                message, name = refusal.errors[0]
                refusal = SendGridRefusal(
                    refusal.status,
                    [(f"{message} (personalizations 0 to {len(ids) - 1} were sent)", name)],
                )
            raise refusal from None
        ids.append(out.id)
    return Response(status_code=202, headers={"X-Message-Id": ids[0]})
