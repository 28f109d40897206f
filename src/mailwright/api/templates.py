"""Message templates: /v1/templates (create, read, replace, delete) and their rendering
for a send (``template_id`` with ``variables``).

A template is checked (compiled) when saved, so a syntax error is a 422 at that moment,
not at the first send. A key restricted to a sender domain sees and uses only the
templates its domain's keys made.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from mailwright.api.auth import require
from mailwright.api.errors import ApiError
from mailwright.api.models import ErrorOut, Strict
from mailwright.message.template import MissingVariable, Rendered, Template, TemplateError
from mailwright.message.template import check as check_template
from mailwright.message.template import render as render_template
from mailwright.store.api import Api, ApiKey, ApiTemplate
from mailwright.store.errors import NotFound

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 422)
}
MAX_SOURCE = 512 * 1024  # characters of one part's source


class TemplateIn(Strict):
    id: str | None = Field(
        default=None, description="a-z, 0-9, _ and -, at most 64; default: one is made"
    )
    name: Annotated[str, Field(max_length=200)] = ""
    subject: Annotated[str, Field(max_length=998)] = ""
    text: Annotated[str | None, Field(max_length=MAX_SOURCE)] = None
    html: Annotated[str | None, Field(max_length=MAX_SOURCE)] = None


class TemplateOut(BaseModel):
    id: str
    name: str
    subject: str
    text: str | None
    html: str | None
    created_at: float
    updated_at: float


def _out(t: ApiTemplate) -> TemplateOut:
    return TemplateOut(
        id=t.id,
        name=t.name,
        subject=t.subject,
        text=t.text,
        html=t.html,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def _visible(t: ApiTemplate | None, key: ApiKey) -> ApiTemplate | None:
    if t is None or (key.sender_domain is not None and t.sender_domain != key.sender_domain):
        return None
    return t


def _checked(spec: TemplateIn) -> Template:
    if spec.text is None and spec.html is None:
        raise ApiError(422, "invalid_template", "text: a template needs text or html", "text")
    template = Template(subject=spec.subject, text=spec.text, html=spec.html)
    try:
        check_template(template)
    except TemplateError as exc:
        raise ApiError(422, "invalid_template", f"{exc.field}: {exc.message}", exc.field) from None
    return template


async def render_for_send(
    api: Api, key: ApiKey, template_id: str, variables: dict[str, Any]
) -> Rendered:
    """The subject, text and html of a send that names a template; 422 for a template
    that is not there (for this key) or a variable it needs that the send lacks."""
    stored = _visible(await api.get_template(template_id), key)
    if stored is None:
        raise ApiError(
            422, "unknown_template", f"template_id: no template {template_id!r}", "template_id"
        )
    try:
        return render_template(Template(stored.subject, stored.text, stored.html), variables)
    except MissingVariable as exc:
        field = f"variables.{exc.name}"
        raise ApiError(422, "missing_variable", f"{field}: missing variable", field) from None
    except TemplateError as exc:
        raise ApiError(
            422, "template_error", f"template {exc.field}: {exc.message}", "template_id"
        ) from None


def template_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=_ERRORS)

    def store(request: Request) -> Api:
        api: Api = request.app.state.services.api
        return api

    @router.post("", status_code=201, response_model=TemplateOut)
    async def create(
        request: Request, spec: TemplateIn, key: Annotated[ApiKey, require("manage")]
    ) -> TemplateOut:
        """A new template; its subject, text and html are Jinja2 (sandboxed)."""
        _checked(spec)
        template_id = spec.id or "tpl_" + secrets.token_hex(8)
        if spec.id is not None and not _ID.fullmatch(spec.id):
            raise ApiError(422, "invalid_template", "id: use a-z, 0-9, _ and -, at most 64", "id")
        if await store(request).get_template(template_id) is not None:
            raise ApiError(409, "conflict", f"id: template {template_id} exists", "id")
        saved = await store(request).save_template(
            ApiTemplate(
                template_id, spec.name, spec.subject, spec.text, spec.html, key.sender_domain, 0, 0
            )
        )
        return _out(saved)

    @router.get("", response_model=list[TemplateOut])
    async def list_all(
        request: Request, key: Annotated[ApiKey, require("read")]
    ) -> list[TemplateOut]:
        return [_out(t) for t in await store(request).list_templates(key.sender_domain)]

    @router.get("/{template_id}", response_model=TemplateOut)
    async def get(
        request: Request, template_id: str, key: Annotated[ApiKey, require("read")]
    ) -> TemplateOut:
        found = _visible(await store(request).get_template(template_id), key)
        if found is None:
            raise ApiError(404, "not_found", f"no template {template_id}")
        return _out(found)

    @router.put("/{template_id}", response_model=TemplateOut)
    async def replace(
        request: Request,
        template_id: str,
        spec: TemplateIn,
        key: Annotated[ApiKey, require("manage")],
    ) -> TemplateOut:
        found = _visible(await store(request).get_template(template_id), key)
        if found is None:
            raise ApiError(404, "not_found", f"no template {template_id}")
        if spec.id is not None and spec.id != template_id:
            raise ApiError(422, "invalid_template", "id: does not match the path", "id")
        _checked(spec)
        saved = await store(request).save_template(
            ApiTemplate(
                template_id,
                spec.name,
                spec.subject,
                spec.text,
                spec.html,
                found.sender_domain,
                0,
                0,
            )
        )
        return _out(saved)

    @router.delete("/{template_id}", status_code=204)
    async def delete(
        request: Request, template_id: str, key: Annotated[ApiKey, require("manage")]
    ) -> None:
        if _visible(await store(request).get_template(template_id), key) is None:
            raise ApiError(404, "not_found", f"no template {template_id}")
        try:
            await store(request).delete_template(template_id)
        except NotFound:
            raise ApiError(404, "not_found", f"no template {template_id}") from None

    return router
