"""The API's one error shape: ``{"error": {"type", "message", "field"}}`` with the status.

400: the request is not the JSON it should be (malformed, a wrong type, an unknown or
missing field): ``field`` is the path ("to.2", "attachments.0.filename"). 422: well formed
but refused (an address that is not one, a domain that is not ours, header injection).
401: no key or an unknown one; 403: a key without the scope or domain; 404; 409; 413;
429; 503 (storage trouble, try again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailwright.core.errors import MailwrightError


class ApiError(MailwrightError):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic's location of an error as a dotted path, without the "body" (or "query")
    root: ("body", "to", 2) → "to.2"; the alias "from" stays "from"."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def from_validation(errors: Sequence[Any]) -> ApiError:
    """The first of pydantic's errors as a 400 naming its field (and how many more)."""
    if not errors:
        return ApiError(400, "invalid_request", "the request is not valid")
    first = errors[0]
    loc = first.get("loc", ())
    kind = first.get("type", "")
    if kind == "json_invalid":
        ctx = first.get("ctx", {}) or {}
        detail = ctx.get("error", "")
        return ApiError(
            400,
            "malformed_json",
            f"the body is not valid JSON: {detail}".rstrip(": "),
            "body",
        )
    path = field_path(loc)
    message = str(first.get("msg", "invalid"))
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ApiError(400, "invalid_request", f"{path}: {message}", path)
