"""API keys on requests: ``Authorization: Bearer <key>``, and the scope a route needs.

Routes declare ``key: Annotated[ApiKey, require("send")]``; the services (and so the
store) are found on ``request.app.state.services`` (an ``ApiServices``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from mailwright.api.errors import ApiError
from mailwright.api.keys import hash_secret
from mailwright.core.log import event as log_event
from mailwright.metrics import meter
from mailwright.store.api import ApiKey

log = logging.getLogger("mailwright.api")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def authenticated(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> ApiKey:
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: Authorization: Bearer <key>",
            headers=_CHALLENGE,
        )
    key: ApiKey | None = await request.app.state.services.api.key_by_hash(
        hash_secret(secret.strip())
    )
    if key is None or key.revoked:
        client = request.client.host if request.client else ""
        log_event(log, logging.WARNING, "auth.failed", protocol="http", ip=client)
        meter.auth_failed("http")
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers=_CHALLENGE)
    return key


def require(scope: str) -> Any:
    """A dependency: the request's key, which must have ``scope`` (403 otherwise)."""

    async def check(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        if scope not in key.scopes:
            raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")
        return key

    return Depends(check)


# Route parameters: ``key: SendKey`` is the request's key, checked for the scope. (Module
# level: FastAPI resolves postponed annotations in the module's namespace.)
SendKey = Annotated[ApiKey, require("send")]
ReadKey = Annotated[ApiKey, require("read")]
ManageKey = Annotated[ApiKey, require("manage")]
