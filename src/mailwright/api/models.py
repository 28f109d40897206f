"""The JSON shapes of the /v1 API (pydantic): what a request may hold, what a reply says.

Request models forbid unknown fields, so a misspelt field is a 400 naming it rather than
a silently ignored option. Checks that need the server (is the domain ours, is the address
well formed) happen in ``api.send``, as 422s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Scope = Literal["send", "read", "manage"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttachmentIn(Strict):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content: str = Field(description="the file's bytes, base64")
    content_type: str = "application/octet-stream"
    inline: bool = False
    content_id: str | None = Field(
        default=None, description="for inline images: referenced from the html as cid:..."
    )


class MessageIn(Strict):
    sender: str = Field(alias="from", description='"ann@example.com" or "Ann <ann@example.com>"')
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list)
    subject: Annotated[str, Field(max_length=998)] = ""
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    template_id: str | None = Field(
        default=None, description="render subject, text and html from this template"
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="the template's variables (any JSON values)"
    )
    unsubscribe: bool = Field(
        default=False,
        description="add a one-click unsubscribe link (RFC 8058); one recipient only",
    )
    track_opens: bool = Field(
        default=False,
        description='add a hidden image to the html that records an "opened" event when'
        " fetched; without html, nothing",
    )
    track_clicks: bool = Field(
        default=False,
        description="point the html's http(s) links at this server, which records a"
        ' "clicked" event and redirects; without html, nothing',
    )
    send_at: datetime | None = Field(
        default=None,
        description="send later: ISO 8601 or Unix seconds; a time past or within a second"
        " sends now",
    )
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1000)]] = (
        Field(default_factory=dict, max_length=50)
    )


class BatchIn(Strict):
    messages: list[MessageIn]


class RecipientOut(BaseModel):
    email: str
    status: str = Field(
        description="queued, delivered, deferred, bounced, expired, rejected, dropped or scheduled"
    )
    reason: str | None = None


class MessageOut(BaseModel):
    id: str = Field(description="the queue id: every event of the message carries it")
    message_id: str = Field(description="the Message-ID header field")
    recipients: list[RecipientOut]


class BatchItemOut(BaseModel):
    index: int
    status: int = Field(description="the HTTP status this message alone would have had")
    message: MessageOut | None = None
    error: ErrorBody | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class EventOut(BaseModel):
    id: str
    type: str
    message: str = Field(description="the queue id")
    message_id: str
    recipient: str | None
    time: float = Field(description="Unix seconds")
    detail: dict[str, str]


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null: none")


class AttemptOut(BaseModel):
    type: str
    time: float
    detail: dict[str, str]


class RecipientState(BaseModel):
    email: str
    status: str
    events: list[AttemptOut]


class MessageState(BaseModel):
    id: str
    message_id: str
    created_at: float
    tags: list[str]
    metadata: dict[str, str]
    recipients: list[RecipientState]
    send_at: float | None = Field(default=None, description="held until then (Unix seconds)")


class KeyIn(Strict):
    name: Annotated[str, Field(max_length=200)] = ""
    scopes: Annotated[list[Scope], Field(min_length=1)]
    sender_domain: str | None = None
    daily_quota: Annotated[int | None, Field(ge=1, description="recipients per UTC day")] = None
    rate_limit: Annotated[int | None, Field(ge=1, description="messages per second")] = None


class KeyLimitsIn(Strict):
    daily_quota: Annotated[int | None, Field(ge=1, description="null: no quota")]
    rate_limit: Annotated[int | None, Field(ge=1, description="null: no limit")]


class UsageOut(BaseModel):
    key_id: int
    daily_quota: int | None
    rate_limit: int | None
    messages_today: int
    recipients_today: int
    resets_at: float = Field(description="Unix seconds: the next UTC midnight")


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    sender_domain: str | None
    created_at: float
    revoked: bool
    daily_quota: int | None
    rate_limit: int | None


class NewKeyOut(KeyOut):
    key: str = Field(description="the secret: shown this once, never again")


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


BatchItemOut.model_rebuild()
