"""The suppression list (/v1/suppressions) and one-click unsubscribe (RFC 8058).

Addresses get on the list by a hard bounce of an API send (the store does it with the
bounce), by unsubscribing, or by hand; a send to a listed address drops that recipient
with a "dropped" event. An unsubscribe link names one message and one recipient, signed
(``api.links``): a POST to it (the mailbox provider's one-click, body
"List-Unsubscribe=One-Click", or the confirmation page's button) lists the address with
an "unsubscribed" event; a GET only shows the page, since link scanners follow GETs.
"""

from __future__ import annotations

import html
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field

from mailwright.api.auth import ManageKey, ReadKey
from mailwright.api.errors import ApiError
from mailwright.api.links import make_token, read_token
from mailwright.api.models import ErrorOut, Strict
from mailwright.core.address import Address, AddressError
from mailwright.core.log import event as log_event
from mailwright.store.api import Api, MailEvent, Suppression
from mailwright.store.errors import NotFound

log = logging.getLogger("mailwright.api")
LINK_SECRET = "links"
UNSUBSCRIBE_PATH = "/v1/unsubscribe/"
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 422)
}


class SuppressionIn(Strict):
    addresses: Annotated[list[str], Field(min_length=1, max_length=1000)]
    reason: Literal["manual", "unsubscribe", "bounce"] = "manual"
    detail: Annotated[str, Field(max_length=500)] = ""


class SuppressionOut(BaseModel):
    address: str
    reason: str
    detail: str
    message: str | None = Field(description="the queue id of the message that listed it")
    created_at: float


class SuppressionPage(BaseModel):
    data: list[SuppressionOut]
    next_cursor: str | None


async def link_secret(request: Request) -> bytes:
    cached: bytes | None = getattr(request.app.state, "link_secret", None)
    if cached is None:
        cached = await request.app.state.services.api.secret(LINK_SECRET)
        request.app.state.link_secret = cached
    return cached


def unsubscribe_token(secret: bytes, queue_id: str, address: str) -> str:
    return make_token(secret, queue_id, address)


def _out(s: Suppression) -> SuppressionOut:
    return SuppressionOut(
        address=s.address,
        reason=s.reason,
        detail=s.detail,
        message=s.queue_id or None,
        created_at=s.created_at,
    )


def _page(address: str, done: bool) -> HTMLResponse:
    who = html.escape(address)
    if done:
        body = f"<p>{who} is unsubscribed and will get no more of these messages.</p>"
    else:
        body = (
            f"<p>Stop sending these messages to {who}?</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>'
        )
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8><title>Unsubscribe</title>"
        f'<meta name="viewport" content="width=device-width"></head><body>{body}</body></html>'
    )


def suppression_routes() -> APIRouter:
    router = APIRouter(tags=["suppressions"], responses=_ERRORS)

    def store(request: Request) -> Api:
        api: Api = request.app.state.services.api
        return api

    @router.get("/v1/suppressions", response_model=SuppressionPage)
    async def list_suppressions(
        request: Request,
        key: ReadKey,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SuppressionPage:
        """The list, by address; ``cursor`` is the previous page's ``next_cursor``."""
        rows = await store(request).list_suppressions(cursor, limit)
        more = len(rows) == limit
        return SuppressionPage(
            data=[_out(s) for s in rows], next_cursor=rows[-1].address if more else None
        )

    @router.post("/v1/suppressions", status_code=201, response_model=list[SuppressionOut])
    async def add(request: Request, spec: SuppressionIn, key: ManageKey) -> list[SuppressionOut]:
        """Put addresses on the list (by hand, or imported from elsewhere)."""
        entries = []
        for i, text in enumerate(spec.addresses):
            try:
                address = str(Address.parse(text.strip(), utf8=True)).lower()
            except AddressError as exc:
                field = f"addresses.{i}"
                raise ApiError(422, "invalid_address", f"{field}: {exc}", field) from None
            entries.append(Suppression(address, spec.reason, spec.detail))
        await store(request).suppress(entries)
        log_event(log, logging.INFO, "api.suppressed", count=len(entries), by=key.prefix)
        found = await store(request).suppressed([e.address for e in entries])
        return [_out(found[e.address]) for e in entries if e.address in found]

    @router.delete("/v1/suppressions/{address}", status_code=204)
    async def remove(request: Request, address: str, key: ManageKey) -> None:
        try:
            await store(request).unsuppress(address)
        except NotFound:
            raise ApiError(404, "not_found", f"{address} is not on the list") from None
        log_event(log, logging.INFO, "api.unsuppressed", address=address, by=key.prefix)

    @router.get(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False)
    async def confirm_page(request: Request, token: str) -> HTMLResponse:
        parts = read_token(await link_secret(request), token, 2)
        if parts is None:
            raise ApiError(404, "not_found", "no such link")
        return _page(parts[1], done=False)

    @router.post(UNSUBSCRIBE_PATH + "{token}", include_in_schema=False, response_model=None)
    async def unsubscribe(request: Request, token: str) -> HTMLResponse | PlainTextResponse:
        """RFC 8058 one-click (or the page's button): list the address, no questions."""
        parts = read_token(await link_secret(request), token, 2)
        if parts is None:
            raise ApiError(404, "not_found", "no such link")
        queue_id, address = parts
        event = MailEvent(queue_id, "unsubscribed", address, {"via": "link"})
        await store(request).suppress([Suppression(address, "unsubscribe", "", queue_id)], [event])
        log_event(log, logging.INFO, "api.unsubscribed", queue_id=queue_id)
        if (await request.body()).strip() == b"List-Unsubscribe=One-Click":
            return PlainTextResponse("unsubscribed\n")
        return _page(address, done=True)

    return router
