"""The HTTP listener: an ASGI application served by uvicorn on sockets bound before the
fork (each worker serves the same sockets, as for SMTP).

uvicorn's ``serve()`` would install its own signal handlers over the application's, so
the listener drives its parts instead: ``startup`` on the given sockets, the tick loop
(the Date header, once a second), and ``shutdown`` with a grace time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import uvicorn
from starlette.types import ASGIApp


class HttpListener:
    def __init__(
        self,
        app: ASGIApp,
        *,
        shutdown_grace: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``tls_context``: serve HTTPS with it (every socket of this listener)."""
        self._config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, int(shutdown_grace)),
            timeout_keep_alive=30,
        )
        self._config.load()
        # uvicorn makes a context only from file names; ours is handed over as it is.
        self._config.ssl = tls_context
        self._server = uvicorn.Server(self._config)
        self._server.lifespan = self._config.lifespan_class(self._config)
        self._sockets: list[socket.socket] = []
        self._ticker: asyncio.Task[None] | None = None

    async def listen_sockets(self, sockets: list[socket.socket]) -> None:
        if not sockets:
            return
        self._sockets = sockets
        await self._server.startup(sockets=sockets)
        self._ticker = asyncio.create_task(self._server.main_loop(), name="http-ticker")

    async def shutdown(self) -> None:
        if self._ticker is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self._ticker = None
        await self._server.shutdown()
