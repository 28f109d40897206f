"""The composition root: config → store → services → listeners. Only here (and in the CLI)
is a concrete store named.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from pathlib import Path

from mailwright.config import Config
from mailwright.config.loader import parse_listen
from mailwright.core.log import event as log_event
from mailwright.intake.routing import Router
from mailwright.serve.smtp import SmtpListener
from mailwright.serve.tls import server_context
from mailwright.store.sqlite import SqliteStore

log = logging.getLogger("mailwright.app")


class App:
    """One running mailwright. Several may run in one process (tests rely on it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.store: SqliteStore | None = None
        self.smtp: SmtpListener | None = None
        self.smtp_addresses: list[tuple[str, int]] = []
        self._tls: ssl.SSLContext | None = None
        self._stop = asyncio.Event()

    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.data_dir / path

    def load_tls(self) -> ssl.SSLContext:
        return server_context(self._path(self.config.tls.cert), self._path(self.config.tls.key))

    def reload_tls(self) -> None:
        """SIGHUP: new connections use the new certificate; a bad one keeps the old."""
        try:
            self._tls = self.load_tls()
        except Exception as exc:
            log_event(log, logging.ERROR, "tls.reload_failed", error=str(exc))
        else:
            log_event(log, logging.INFO, "tls.reloaded", cert=self.config.tls.cert)

    async def start(self) -> None:
        self._tls = self.load_tls()
        self.store = await asyncio.to_thread(SqliteStore, self.data_dir)
        router = Router(
            self.store.accounts,
            self.config.smtp.subaddress_delimiter,
            hostname=self.config.hostname,
        )
        self.smtp = SmtpListener(
            hostname=self.config.hostname,
            config=self.config.smtp,
            router=router,
            messages=self.store.messages,
            tls_context=lambda: self._tls,
        )
        for item in self.config.smtp.listen:
            host, port = parse_listen(item)
            server = await self.smtp.listen(host, port)
            for sock in server.sockets:
                name = sock.getsockname()
                self.smtp_addresses.append((str(name[0]), int(name[1])))
        log_event(
            log,
            logging.INFO,
            "app.started",
            smtp=" ".join(f"{h}:{p}" for h, p in self.smtp_addresses),
            data_dir=str(self.data_dir),
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        if self.smtp is not None:
            await self.smtp.shutdown(self.config.smtp.shutdown_grace)
        if self.store is not None:
            await self.store.close()
            self.store = None
        log_event(log, logging.INFO, "app.stopped")

    async def serve_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        self.print_banner()
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    def print_banner(self) -> None:
        lines = [f"mailwright is running for {self.config.hostname} (data in {self.data_dir})"]
        for host, port in self.smtp_addresses:
            lines.append(f"  SMTP (inbound, STARTTLS)  {host}:{port}")
        lines.append("Stop with Ctrl-C (SIGTERM); reload the TLS certificate with SIGHUP.")
        print("\n".join(lines), flush=True)


def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT; exit status 0 on a clean stop."""
    app = App(config)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(app.serve_forever())
        else:
            uvloop.run(app.serve_forever())
    sys.stdout.flush()
    return 0
