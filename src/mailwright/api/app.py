"""The /v1 HTTP API as an ASGI application (FastAPI): routes, key checks, error shape.

Every route but the OpenAPI document and the docs page needs a key
(``Authorization: Bearer mw_...``) with the route's scope: "send" to send, "read" for
messages and events, "manage" for keys. A key restricted to a sender domain sends only
from it and sees only its messages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailwright.api import keys as api_keys
from mailwright.api.auth import ManageKey, ReadKey, SendKey, authenticated
from mailwright.api.errors import ApiError, from_validation
from mailwright.api.metrics import RequestMetrics, metrics_routes
from mailwright.api.models import (
    BatchIn,
    BatchItemOut,
    BatchOut,
    ErrorBody,
    ErrorOut,
    EventPage,
    KeyIn,
    KeyLimitsIn,
    KeyOut,
    MessageIn,
    MessageOut,
    MessageState,
    NewKeyOut,
    UsageOut,
)
from mailwright.api.quota import usage
from mailwright.api.send import (
    Limits,
    Sender,
    check_idempotency_key,
    fingerprint,
    request_recipients,
)
from mailwright.api.sendgrid import SendGridRefusal, sendgrid_routes
from mailwright.api.stats import stats_routes
from mailwright.api.suppression import suppression_routes
from mailwright.api.templates import template_routes
from mailwright.api.tracking import tracking_routes
from mailwright.api.views import EVENT_TYPES, STORE_TYPES, expand, held_state, message_state
from mailwright.api.webhook_routes import webhook_routes
from mailwright.api.webhooks import Network
from mailwright.core.address import Address, AddressError
from mailwright.core.log import event as log_event
from mailwright.intake.pipeline import Pipeline
from mailwright.store.api import Accounts, Api, ApiKey, EventQuery, Queue, Webhooks
from mailwright.store.errors import NotFound, StoreError

log = logging.getLogger("mailwright.api")
_M = TypeVar("_M", MessageIn, BatchIn, KeyIn, KeyLimitsIn)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 413, 422, 503)
}


@dataclass(frozen=True, slots=True)
class ApiServices:
    pipeline: Pipeline
    api: Api
    queue: Queue
    accounts: Accounts
    max_request_size: int
    max_batch: int
    max_recipients: int
    max_message_size: int
    public_url: str = "http://localhost"  # where links in messages point (no trailing /)
    webhooks: Webhooks | None = None
    metrics: bool = True  # serve GET /metrics (http.metrics)
    webhook_networks: tuple[Network, ...] = ()  # webhooks.allowed_networks


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


class BodyLimit:
    """Refuses a request body over ``limit`` octets with 413, by its Content-Length or,
    without one, as it streams: the application never holds more than the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ApiError(413, "too_large", f"the request body is over {self.limit} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > self.limit:
                    if length < 0:
                        too_large = ApiError(400, "invalid_request", "bad Content-Length")
                    # The SendGrid-compatible route answers in SendGrid's shape.
                    if scope.get("path", "").startswith("/v3/"):
                        refusal = SendGridRefusal(too_large.status, [(too_large.message, None)])
                        await refusal.response()(scope, receive, send)
                    else:
                        await _error(too_large)(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, "too_large", f"the request body is over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(services: ApiServices) -> ASGIApp:
    app = FastAPI(
        title="mailwright",
        summary="Send mail and follow every message: the self-hosted sending API.",
        version="1",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    app.state.webhooks = services.webhooks
    app.include_router(webhook_routes())
    app.include_router(sendgrid_routes())
    app.state.sender = sender = build_sender(services)

    app.include_router(template_routes())
    app.include_router(suppression_routes())
    app.include_router(tracking_routes())
    app.include_router(stats_routes())
    if services.metrics:
        app.include_router(metrics_routes())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(from_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(ApiError(exc.status_code, kind, str(exc.detail)))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        log_event(log, logging.ERROR, "api.store_failed", path=request.url.path, error=str(exc))
        return _error(ApiError(503, "unavailable", "storage is unavailable; try again"))

    @app.post(
        "/v1/messages",
        status_code=202,
        response_model=MessageOut,
        responses={
            200: {"model": MessageOut, "description": "sent before (Idempotency-Key)"},
            **_ERRORS,
        },
        tags=["messages"],
    )
    async def send_message(
        request: Request,
        key: SendKey,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        """Send one message: the server builds the MIME message, DKIM-signs it, files
        local copies and queues the rest. 202 with each recipient's status."""
        raw = await request.body()
        msg = _parse(MessageIn, raw)
        status, out = await sender.send(
            key,
            msg,
            idempotency_key=check_idempotency_key(idempotency_key),
            request_hash=fingerprint(raw),
        )
        return JSONResponse(out.model_dump(), status_code=status)

    @app.post(
        "/v1/messages/batch",
        response_model=BatchOut,
        responses=_ERRORS,
        tags=["messages"],
    )
    async def send_batch(request: Request, key: SendKey) -> BatchOut:
        """Up to ``max_batch`` messages; each is sent (or refused) on its own, and the
        answer says which, in order. A message reported as sent is stored."""
        batch = _parse(BatchIn, await request.body())
        if len(batch.messages) > services.max_batch:
            raise ApiError(
                422,
                "batch_too_large",
                f"messages: at most {services.max_batch} in one batch",
                "messages",
            )
        results: list[BatchItemOut] = []
        for i, msg in enumerate(batch.messages):
            try:
                status, out = await sender.send(key, msg)
            except ApiError as exc:
                field = f"messages.{i}.{exc.field}" if exc.field else f"messages.{i}"
                results.append(
                    BatchItemOut(
                        index=i,
                        status=exc.status,
                        error=ErrorBody(type=exc.type, message=exc.message, field=field),
                    )
                )
            else:
                results.append(BatchItemOut(index=i, status=status, message=out))
        return BatchOut(results=results)

    @app.get(
        "/v1/messages/{message}",
        response_model=MessageState,
        responses=_ERRORS,
        tags=["messages"],
    )
    async def get_message(message: str, key: ReadKey) -> MessageState:
        """A message sent through the API: each recipient's state and history (or, held
        for its ``send_at``, "scheduled")."""
        sent = await services.api.get_send(message)
        if sent is None:
            held = await services.api.get_scheduled(message)
            if held is None or not _visible(key, held.sender_domain):
                raise ApiError(404, "not_found", f"no message {message}")
            return held_state(held, request_recipients(held))
        if not _visible(key, sent.sender_domain):
            raise ApiError(404, "not_found", f"no message {message}")
        return message_state(sent, await services.queue.events(message))

    @app.delete("/v1/messages/{message}", status_code=204, responses=_ERRORS, tags=["messages"])
    async def cancel_message(message: str, key: SendKey) -> None:
        """Cancel a send held for its ``send_at`` (409 once it is being sent or sent)."""
        held = await services.api.get_scheduled(message)
        if held is None or not _visible(key, held.sender_domain):
            if await services.api.get_send(message) is not None:
                raise ApiError(409, "conflict", f"{message} was sent already")
            raise ApiError(404, "not_found", f"no scheduled message {message}")
        if not await services.api.cancel_scheduled(message):
            raise ApiError(409, "conflict", f"{message} is being sent")
        log_event(log, logging.INFO, "api.cancelled", queue_id=message, by=key.prefix)

    @app.get("/v1/events", response_model=EventPage, responses=_ERRORS, tags=["events"])
    async def list_events(
        key: ReadKey,
        message: str | None = None,
        recipient: str | None = None,
        type: Annotated[
            str | None, Query(description="comma list of: " + ", ".join(EVENT_TYPES))
        ] = None,
        tag: str | None = None,
        since: Annotated[float | None, Query(description="Unix seconds")] = None,
        until: Annotated[float | None, Query(description="Unix seconds")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventPage:
        """Events of messages sent through the API, oldest first, a page at a time."""
        wanted = _types(type)
        after = _cursor(cursor)
        if recipient is not None:
            recipient = _recipient(recipient)
        store_types = sorted({t for w in wanted for t in STORE_TYPES[w]})
        rows = await services.api.query_events(
            EventQuery(
                queue_id=message,
                # A local recipient is named inside its message's arrival row.
                recipient=None if "received" in store_types or not wanted else recipient,
                types=tuple(store_types),
                tag=tag,
                since=since,
                until=until,
                sender_domain=key.sender_domain,
                after=after,
                limit=limit,
            )
        )
        data = [
            e
            for row in rows
            for e in expand(row)
            if (not wanted or e.type in wanted) and (recipient is None or e.recipient == recipient)
        ]
        more = len(rows) == limit
        return EventPage(data=data, next_cursor=str(rows[-1].id) if more else None)

    @app.post(
        "/v1/api-keys", status_code=201, response_model=NewKeyOut, responses=_ERRORS, tags=["keys"]
    )
    async def create_key(request: Request, key: ManageKey) -> NewKeyOut:
        """A new key; its secret is in this answer only."""
        spec = _parse(KeyIn, await request.body())
        domain = await _domain(services, spec.sender_domain)
        made = api_keys.new_key()
        stored = await services.api.create_key(
            spec.name,
            made.prefix,
            made.secret_hash,
            frozenset(spec.scopes),
            domain,
            daily_quota=spec.daily_quota,
            rate_limit=spec.rate_limit,
        )
        log_event(log, logging.INFO, "api.key_created", key=made.prefix, by=key.prefix)
        return NewKeyOut(**_key_out(stored).model_dump(), key=made.secret)

    @app.get("/v1/api-keys", response_model=list[KeyOut], responses=_ERRORS, tags=["keys"])
    async def list_keys(key: ManageKey) -> list[KeyOut]:
        return [_key_out(k) for k in await services.api.list_keys()]

    @app.patch("/v1/api-keys/{key_id}", response_model=KeyOut, responses=_ERRORS, tags=["keys"])
    async def set_limits(request: Request, key_id: int, key: ManageKey) -> KeyOut:
        """Set (or, with null, lift) a key's daily quota and rate limit."""
        spec = _parse(KeyLimitsIn, await request.body())
        try:
            changed = await services.api.set_key_limits(key_id, spec.daily_quota, spec.rate_limit)
        except NotFound:
            raise ApiError(404, "not_found", f"no API key {key_id}") from None
        log_event(log, logging.INFO, "api.key_limits", key_id=key_id, by=key.prefix)
        return _key_out(changed)

    @app.get("/v1/usage", response_model=UsageOut, responses=_ERRORS, tags=["keys"])
    async def get_usage(key: Annotated[ApiKey, Depends(authenticated)]) -> UsageOut:
        """What the request's key sent today (UTC) and its limits."""
        today = await usage(services.api, key, time.time())
        return UsageOut(
            key_id=key.id,
            daily_quota=key.daily_quota,
            rate_limit=key.rate_limit,
            messages_today=today.messages,
            recipients_today=today.recipients,
            resets_at=today.resets_at,
        )

    @app.delete("/v1/api-keys/{key_id}", status_code=204, responses=_ERRORS, tags=["keys"])
    async def revoke_key(key_id: int, key: ManageKey) -> None:
        try:
            await services.api.revoke_key(key_id)
        except NotFound:
            raise ApiError(404, "not_found", f"no API key {key_id}") from None
        log_event(log, logging.INFO, "api.key_revoked", key_id=key_id, by=key.prefix)

    return RequestMetrics(BodyLimit(app, services.max_request_size))


def build_sender(services: ApiServices) -> Sender:
    return Sender(
        services.pipeline,
        services.api,
        services.queue,
        Limits(services.max_message_size, services.max_recipients, services.public_url),
    )


def _visible(key: ApiKey, sender_domain: str) -> bool:
    return key.sender_domain is None or key.sender_domain == sender_domain


def _parse(model: type[_M], raw: bytes) -> _M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation(exc.errors()) from None


def _types(text: str | None) -> set[str]:
    if not text:
        return set()
    wanted = {t.strip() for t in text.split(",") if t.strip()}
    unknown = wanted - set(EVENT_TYPES)
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"type: unknown event type {sorted(unknown)[0]!r}; use {', '.join(EVENT_TYPES)}",
            "type",
        )
    return wanted


def _cursor(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, "invalid_request", "cursor: not a cursor this API gave", "cursor")
    return int(text)


def _recipient(text: str) -> str:
    try:
        return str(Address.parse(text, utf8=True))
    except AddressError:
        raise ApiError(
            422, "invalid_address", f"recipient: {text!r} is not an address", "recipient"
        ) from None


async def _domain(services: ApiServices, name: str | None) -> str | None:
    if name is None:
        return None
    domain = name.strip().lower()
    local = {d.name.lower() for d in await services.accounts.list_domains()}
    if domain not in local:
        raise ApiError(
            422,
            "unknown_domain",
            f"sender_domain: {name} is not a domain of this server",
            "sender_domain",
        )
    return domain


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=sorted(key.scopes),
        sender_domain=key.sender_domain,
        created_at=key.created_at,
        revoked=key.revoked,
        daily_quota=key.daily_quota,
        rate_limit=key.rate_limit,
    )
