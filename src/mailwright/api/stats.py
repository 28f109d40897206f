"""Analytics: ``GET /v1/stats`` counts each event type of API messages in a time range,
grouped by UTC day, recipient domain or tag.

The counts are made from the event log as the API shows it (``api.views.expand``: an
arrival with local recipients counts one "delivered" for each), a page of rows at a time.
A range is capped at ``MAX_ROWS`` event rows: a wider one is a 422 asking for a narrower
range, never a request that runs for minutes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from mailwright.api.auth import ReadKey
from mailwright.api.errors import ApiError
from mailwright.api.models import ErrorOut
from mailwright.api.views import EVENT_TYPES, expand
from mailwright.store.api import Api, EventQuery

MAX_ROWS = 200_000
_PAGE = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 422)
}


class StatsGroup(BaseModel):
    group: str = Field(description="a day (YYYY-MM-DD), a recipient domain, or a tag")
    counts: dict[str, int] = Field(description="events of each type")


class StatsOut(BaseModel):
    start: float
    end: float
    group_by: str
    data: list[StatsGroup]


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


async def collect(
    api: Api, start: float, end: float, group_by: str, sender_domain: str | None
) -> dict[str, dict[str, int]]:
    """{group: {event type: count}} over [start, end)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(EVENT_TYPES, 0))
    tags: dict[str, tuple[str, ...]] = {}
    after, rows = 0, 0
    while True:
        page = await api.query_events(
            EventQuery(
                since=start, until=end, sender_domain=sender_domain, after=after, limit=_PAGE
            )
        )
        rows += len(page)
        if rows > MAX_ROWS:
            raise ApiError(
                422,
                "range_too_large",
                f"more than {MAX_ROWS} events in this range; ask for a narrower one",
                "from",
            )
        for row in page:
            for e in expand(row):
                if e.type not in EVENT_TYPES:
                    continue
                if group_by == "day":
                    groups: tuple[str, ...] = (_day(e.time),)
                elif group_by == "domain":
                    groups = (e.recipient.rsplit("@", 1)[-1].lower() if e.recipient else "",)
                else:
                    if e.message not in tags:
                        sent = await api.get_send(e.message)
                        tags[e.message] = sent.tags if sent is not None else ()
                    groups = tags[e.message]
                for g in groups:
                    counts[g][e.type] += 1
        if len(page) < _PAGE:
            return dict(counts)
        after = page[-1].id


def stats_routes() -> APIRouter:
    router = APIRouter(tags=["events"], responses=_ERRORS)

    @router.get("/v1/stats", response_model=StatsOut)
    async def stats(
        request: Request,
        key: ReadKey,
        start: Annotated[
            float | None, Query(alias="from", description="Unix seconds; default: 7 days ago")
        ] = None,
        end: Annotated[
            float | None, Query(alias="to", description="Unix seconds; default: now")
        ] = None,
        group_by: Literal["day", "domain", "tag"] = "day",
    ) -> StatsOut:
        """How many events of each type, per day, recipient domain or tag. Events of an
        arrival without a recipient ("accepted") count under the domain ""."""
        now = time.time()
        end_at = now if end is None else end
        start_at = end_at - 7 * 86400 if start is None else start
        if start_at >= end_at:
            raise ApiError(400, "invalid_request", "from: must be before to", "from")
        api: Api = request.app.state.services.api
        counts = await collect(api, start_at, end_at, group_by, key.sender_domain)
        return StatsOut(
            start=start_at,
            end=end_at,
            group_by=group_by,
            data=[StatsGroup(group=g, counts=counts[g]) for g in sorted(counts)],
        )

    return router
