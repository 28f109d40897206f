"""The /v1/webhooks routes: register, list and delete webhooks (scope "manage").

A webhook made with a key restricted to a sender domain gets only that domain's events,
and such a key sees and deletes only its domain's webhooks. The signing secret is made
here and shown once, in the answer to the POST that made it.

The webhooks store is found on ``request.app.state.webhooks`` (a ``store.api.Webhooks``).
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError

from mailwright.api.auth import require
from mailwright.api.errors import ApiError, from_validation
from mailwright.api.models import ErrorOut, Strict
from mailwright.api.views import EVENT_TYPES
from mailwright.api.webhooks import Network, reachable
from mailwright.core.log import event as log_event
from mailwright.store.api import ApiKey, Webhook, Webhooks
from mailwright.store.errors import NotFound

log = logging.getLogger("mailwright.api")

MAX_URL = 2000  # characters: what every browser and proxy handles
SECRET_PREFIX = "whsec_"
_SCHEMES = ("http", "https")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 422, 503)
}

ManageKey = Annotated[ApiKey, require("manage")]


class WebhookIn(Strict):
    url: str = Field(description="http or https; redirects are not followed")
    types: list[str] = Field(
        default_factory=list,
        description="event types to send (" + ", ".join(EVENT_TYPES) + "); empty: all",
    )


class WebhookOut(BaseModel):
    id: int
    url: str
    types: list[str]
    sender_domain: str | None = Field(description="only this domain's events; null: all")
    created_at: float
    attempts: int = Field(description="failed POSTs since its events last went through")
    next_attempt: float | None = Field(description="the next retry (Unix seconds); null: none")
    last_error: str = Field(description="what went wrong last; empty after a success")
    last_success: float | None = Field(
        description="when its events last went through (or there were none of its own)"
    )


class NewWebhookOut(BaseModel):
    id: int
    url: str
    types: list[str]
    sender_domain: str | None
    created_at: float
    secret: str = Field(description="signs every POST: shown this once, never again")


def check_url(url: str, allowed: Sequence[Network] = ()) -> str:
    """``url`` if the dispatcher may POST to it, else a 422 naming "url". A host given as
    an address is checked as the dispatcher will check it (``webhooks.reachable``); a
    name is checked at each POST, against what it resolves to then."""

    def refuse(why: str) -> ApiError:
        return ApiError(422, "invalid_url", f"url: {why}", "url")

    if len(url) > MAX_URL:
        raise refuse(f"at most {MAX_URL} characters")
    # It becomes the request line and the Host header: nothing that could end or split
    # a header, and no spaces (percent-encode them, and anything non-ASCII).
    if not url or any(not 0x21 <= ord(ch) <= 0x7E for ch in url):
        raise refuse("not a URL (printable ASCII without spaces; percent-encode the rest)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check: a bad one raises
    except ValueError:
        raise refuse("not a URL") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise refuse("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        # The signature authenticates the POST; credentials in a URL end up in logs.
        raise refuse("must not carry credentials")
    if not parts.hostname:
        raise refuse("must name a host")
    try:
        refused = not reachable(parts.hostname, allowed)
    except ValueError:
        refused = False  # a name, not an address: checked at each POST
    if refused:
        raise refuse(
            f"{parts.hostname} is an address webhooks may not reach (webhooks.allowed_networks)"
        )
    return url


def check_types(types: list[str]) -> tuple[str, ...]:
    """The types, each once, in the order given; a 422 naming "types.N" for an unknown one."""
    for i, kind in enumerate(types):
        if kind not in EVENT_TYPES:
            raise ApiError(
                422,
                "unknown_type",
                f"types.{i}: unknown event type {kind!r}; use {', '.join(EVENT_TYPES)}",
                f"types.{i}",
            )
    return tuple(dict.fromkeys(types))


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _store(request: Request) -> Webhooks:
    webhooks: Webhooks = request.app.state.webhooks
    return webhooks


def _parse(raw: bytes) -> WebhookIn:
    try:
        return WebhookIn.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation(exc.errors()) from None


def _visible(webhook: Webhook | None, key: ApiKey) -> bool:
    return webhook is not None and (
        key.sender_domain is None or webhook.sender_domain == key.sender_domain
    )


def _out(w: Webhook) -> WebhookOut:
    return WebhookOut(
        id=w.id,
        url=w.url,
        types=list(w.types),
        sender_domain=w.sender_domain,
        created_at=w.created_at,
        attempts=w.attempts,
        next_attempt=w.next_attempt if w.attempts else None,
        last_error=w.last_error,
        last_success=w.last_success,
    )


async def create_webhook(request: Request, key: ManageKey) -> NewWebhookOut:
    """Register a URL for the events of messages sent through the API (those of the
    key's domain, for a restricted key), from now on. The answer holds the signing
    secret, shown this once."""
    spec = _parse(await request.body())
    url = check_url(spec.url, request.app.state.services.webhook_networks)
    types = check_types(spec.types)
    secret = new_secret()
    made = await _store(request).create_webhook(url, secret, types, key.sender_domain)
    log_event(log, logging.INFO, "api.webhook_created", webhook=made.id, by=key.prefix)
    return NewWebhookOut(
        id=made.id,
        url=made.url,
        types=list(made.types),
        sender_domain=made.sender_domain,
        created_at=made.created_at,
        secret=secret,
    )


async def list_webhooks(request: Request, key: ManageKey) -> list[WebhookOut]:
    """The webhooks the key may see (its domain's, for a restricted key), with the state
    of their deliveries; never their secrets."""
    return [_out(w) for w in await _store(request).list_webhooks(key.sender_domain)]


async def delete_webhook(request: Request, webhook_id: int, key: ManageKey) -> None:
    """Stop sending to a webhook; events not yet sent are not sent."""
    store = _store(request)
    if not _visible(await store.get_webhook(webhook_id), key):
        raise ApiError(404, "not_found", f"no webhook {webhook_id}")
    try:
        await store.delete_webhook(webhook_id)
    except NotFound:
        raise ApiError(404, "not_found", f"no webhook {webhook_id}") from None
    log_event(log, logging.INFO, "api.webhook_deleted", webhook=webhook_id, by=key.prefix)


def webhook_routes() -> APIRouter:
    router = APIRouter(tags=["webhooks"])
    router.add_api_route(
        "/v1/webhooks",
        create_webhook,
        methods=["POST"],
        status_code=201,
        response_model=NewWebhookOut,
        responses=_ERRORS,
    )
    router.add_api_route(
        "/v1/webhooks",
        list_webhooks,
        methods=["GET"],
        response_model=list[WebhookOut],
        responses=_ERRORS,
    )
    router.add_api_route(
        "/v1/webhooks/{webhook_id}",
        delete_webhook,
        methods=["DELETE"],
        status_code=204,
        responses=_ERRORS,
    )
    return router
