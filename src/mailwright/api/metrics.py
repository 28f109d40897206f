"""``GET /metrics`` for Prometheus, and the count of every HTTP request.

The route needs no key, as a Prometheus server expects (``http.metrics = false`` removes
it). Whichever worker answers, the numbers are every worker's sum (``metrics.meter``);
the queue's depth and age are read from the store at each scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailwright.core.log import event as log_event
from mailwright.metrics import meter
from mailwright.store.api import Queue
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.api")


def metrics_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        queue: Queue = request.app.state.services.queue
        facts: meter.QueueFacts | None = None
        try:
            depth, oldest = await queue.queue_stats()
        except StoreError as exc:
            # The counters are still worth a scrape; the queue's gauges are left out.
            log_event(log, logging.ERROR, "metrics.store_failed", error=str(exc))
        else:
            age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
            facts = meter.QueueFacts(depth, age)
        body = await asyncio.to_thread(meter.exposition, facts)
        return Response(body, media_type=meter.CONTENT_TYPE)

    return router


class RequestMetrics:
    """Counts each request by method and status, and times it to the end of its answer.

    Outermost, so that answers made outside the routes (413 over the body limit, 500 for a
    crash) are counted too. Labels are method and status only: paths carry ids and tokens,
    and would make a series of every one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the application fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            meter.http_request(str(scope.get("method", "")), status, time.perf_counter() - started)
