"""The composition root: config → store → services → listeners. Only here (and in the CLI)
is a concrete store named.

Process model: with ``workers = 1`` one process serves everything. With more, a
supervisor binds every listening socket, recovers the store after a crash (the blob
sweep) once, then forks the workers; each runs its own event loop and store connections
over the same data directory and accepts from the shared sockets. Connection caps are
shared (``serve.limits``). Workers die with the supervisor (PR_SET_PDEATHSIG), so a
SIGKILL of the supervisor is a SIGKILL of the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.api.app import ApiServices, build_sender, create_app
from mailwright.api.schedule import ScheduledSender
from mailwright.api.webhooks import WebhookDispatcher
from mailwright.config import Config
from mailwright.config.loader import parse_listen
from mailwright.core.errors import ConfigError
from mailwright.core.log import event as log_event
from mailwright.dns.resolver import DnsResolver, Resolver, UnconfiguredResolver
from mailwright.intake.pipeline import Pipeline
from mailwright.intake.routing import Router
from mailwright.intake.smtp import Relay, Submission
from mailwright.message.dkim import DkimKey
from mailwright.metrics import meter
from mailwright.outbound.runner import Dsn, QueueRunner
from mailwright.policy.auth import Authenticator, AuthLimits, AuthThrottle, LoginCache
from mailwright.serve.access import AccessListener
from mailwright.serve.http import HttpListener
from mailwright.serve.imap import imap_listener
from mailwright.serve.limits import ConnectionLimiter
from mailwright.serve.pop3 import pop3_listener
from mailwright.serve.smtp import SmtpListener, bind
from mailwright.serve.tls import server_context
from mailwright.store.dkimkeys import DkimKeyStore
from mailwright.store.sqlite import SqliteStore

log = logging.getLogger("mailwright.app")


@dataclass
class Sockets:
    """Every listening socket, bound once (by the supervisor, before the fork)."""

    smtp: list[socket.socket] = field(default_factory=list)
    submission: list[socket.socket] = field(default_factory=list)  # STARTTLS (587)
    submissions: list[socket.socket] = field(default_factory=list)  # implicit TLS (465)
    pop3: list[socket.socket] = field(default_factory=list)  # STLS
    pop3s: list[socket.socket] = field(default_factory=list)  # implicit TLS
    imap: list[socket.socket] = field(default_factory=list)  # STARTTLS
    imaps: list[socket.socket] = field(default_factory=list)  # implicit TLS
    http: list[socket.socket] = field(default_factory=list)  # the HTTP API
    https: list[socket.socket] = field(default_factory=list)  # the HTTP API over TLS

    def all(self) -> list[socket.socket]:
        return [
            *self.smtp,
            *self.submission,
            *self.submissions,
            *self.pop3,
            *self.pop3s,
            *self.imap,
            *self.imaps,
            *self.http,
            *self.https,
        ]


@dataclass
class Shared:
    """State every worker shares through memory made before the fork."""

    smtp_limiter: ConnectionLimiter
    pop3_limiter: ConnectionLimiter
    imap_limiter: ConnectionLimiter
    throttle: AuthThrottle
    login_cache: LoginCache

    @classmethod
    def create(cls, config: Config, workers: int) -> Shared:
        smtp, pop3, imap = config.smtp, config.pop3, config.imap
        return cls(
            ConnectionLimiter(workers, smtp.max_connections, smtp.max_connections_per_ip),
            ConnectionLimiter(workers, pop3.max_connections, pop3.max_connections_per_ip),
            ConnectionLimiter(workers, imap.max_connections, imap.max_connections_per_ip),
            AuthThrottle(auth_limits(config)),
            LoginCache(ttl=config.auth.cache_ttl),
        )

    def set_worker(self, n: int) -> None:
        self.smtp_limiter.worker = n
        self.pop3_limiter.worker = n
        self.imap_limiter.worker = n

    def clear_worker(self, n: int) -> None:
        self.smtp_limiter.clear(n)
        self.pop3_limiter.clear(n)
        self.imap_limiter.clear(n)


def auth_limits(config: Config) -> AuthLimits:
    a = config.auth
    return AuthLimits(
        window=a.window,
        free_failures=a.free_failures,
        max_delay=a.max_delay,
        max_ip_failures=a.max_ip_failures,
        max_user_failures=a.max_user_failures,
    )


class App:
    """One running mailwright (or one worker of it). Several may run in one process."""

    def __init__(
        self,
        config: Config,
        *,
        sockets: Sockets | None = None,
        shared: Shared | None = None,
        sweep: bool = True,
    ) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.store: SqliteStore | None = None
        self.smtp: SmtpListener | None = None
        self.submission: SmtpListener | None = None
        self.runner: QueueRunner | None = None
        self.pipeline: Pipeline | None = None
        self.pop3: AccessListener | None = None
        self.imap: AccessListener | None = None
        self.http: HttpListener | None = None
        self.https: HttpListener | None = None
        self.webhooks: WebhookDispatcher | None = None
        self.scheduled: ScheduledSender | None = None
        self.addresses: dict[str, list[tuple[str, int]]] = {}
        self._sockets = sockets
        self._shared = shared
        self._sweep = sweep
        self._tls: ssl.SSLContext | None = None
        self._stop = asyncio.Event()

    @property
    def smtp_addresses(self) -> list[tuple[str, int]]:
        return self.addresses.get("smtp", [])

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
        self.store = await asyncio.to_thread(SqliteStore, self.data_dir, sweep=self._sweep)
        shared = self._shared or Shared.create(self.config, 1)
        sockets = self._sockets or bind_listeners(self.config)
        router = Router(
            self.store.accounts,
            self.config.smtp.subaddress_delimiter,
            hostname=self.config.hostname,
        )
        keys = _KeyCache(DkimKeyStore(self.data_dir))
        self.pipeline = pipeline = Pipeline(
            router,
            self.store.messages,
            self.config.hostname,
            dkim_keys=keys.get,
            max_header_size=self.config.smtp.max_header_size,
            max_mime_depth=self.config.smtp.max_mime_depth,
            queue=self.store.queue,
        )
        self.runner = QueueRunner(
            queue=self.store.queue,
            resolver=self._resolver(),
            config=self.config,
            notifier=self._send_dsn,
        )
        pipeline.on_queued = self.runner.wake
        hooks = self.config.webhooks
        self.webhooks = WebhookDispatcher(
            self.store.webhooks,
            self.store.api,
            poll_interval=hooks.poll_interval,
            batch=hooks.batch,
            timeout=hooks.timeout,
            retry_schedule=hooks.retry_schedule,
            concurrency=hooks.max_concurrent,
            allowed_networks=hooks.networks,
        )
        relay = Relay.from_config(self.config.smtp)
        self.smtp = SmtpListener(
            hostname=self.config.hostname,
            config=self.config.smtp,
            router=router,
            messages=self.store.messages,
            tls_context=lambda: self._tls,
            limiter=shared.smtp_limiter,
            pipeline=pipeline,
            relay=relay,
        )
        for sock in sockets.smtp:
            await self.smtp.listen_socket(sock)
        # One per process: its dummy hash (for unknown users) costs one argon2 hashing.
        authenticator = Authenticator(
            self.store.accounts, shared.throttle, cache=shared.login_cache
        )
        if sockets.submission or sockets.submissions:
            sub = self.config.submission
            self.submission = SmtpListener(
                hostname=self.config.hostname,
                config=self.config.smtp,
                router=router,
                messages=self.store.messages,
                tls_context=lambda: self._tls,
                limiter=shared.smtp_limiter,
                pipeline=pipeline,
                submission=Submission(authenticator, sub.allow_plaintext, sub.sign_dkim),
                relay=relay,
            )
            for sock in sockets.submission:
                await self.submission.listen_socket(sock)
            for sock in sockets.submissions:
                await self.submission.listen_socket(sock, implicit_tls=True)
        if sockets.pop3 or sockets.pop3s:
            self.pop3 = pop3_listener(
                hostname=self.config.hostname,
                config=self.config.pop3,
                mailboxes=self.store.mailboxes,
                messages=self.store.messages,
                locks=self.store.locks,
                authenticator=authenticator,
                tls_context=lambda: self._tls,
                limiter=shared.pop3_limiter,
            )
            for sock in sockets.pop3:
                await self.pop3.listen_socket(sock)
            for sock in sockets.pop3s:
                await self.pop3.listen_socket(sock, implicit_tls=True)
        if sockets.imap or sockets.imaps:
            self.imap = imap_listener(
                hostname=self.config.hostname,
                config=self.config.imap,
                accounts=self.store.accounts,
                mailboxes=self.store.mailboxes,
                messages=self.store.messages,
                changes=self.store.changes,
                authenticator=authenticator,
                tls_context=lambda: self._tls,
                limiter=shared.imap_limiter,
            )
            for sock in sockets.imap:
                await self.imap.listen_socket(sock)
            for sock in sockets.imaps:
                await self.imap.listen_socket(sock, implicit_tls=True)
        if sockets.http or sockets.https:
            services = ApiServices(
                pipeline=pipeline,
                api=self.store.api,
                queue=self.store.queue,
                accounts=self.store.accounts,
                max_request_size=self.config.http.max_request_size,
                max_batch=self.config.http.max_batch,
                max_recipients=self.config.http.max_recipients,
                max_message_size=self.config.smtp.max_message_size,
                public_url=public_url(self.config, sockets),
                webhooks=self.store.webhooks,
                metrics=self.config.http.metrics,
                webhook_networks=self.config.webhooks.networks,
            )
            api_app = create_app(services)
            grace = self.config.smtp.shutdown_grace
            if sockets.http:
                self.http = HttpListener(api_app, shutdown_grace=grace)
                await self.http.listen_sockets(sockets.http)
            if sockets.https:
                self.https = HttpListener(
                    api_app, shutdown_grace=grace, tls_context=self._https_context()
                )
                await self.https.listen_sockets(sockets.https)
            # Held sends go out from every worker that serves the API (one claims each).
            self.scheduled = ScheduledSender(self.store.api, build_sender(services))
            self.scheduled.start()
        self.runner.start()
        self.webhooks.start()
        self.addresses = addresses_of(sockets)
        log_event(
            log,
            logging.INFO,
            "app.started",
            **{k: " ".join(f"{h}:{p}" for h, p in v) for k, v in self.addresses.items() if v},
            data_dir=str(self.data_dir),
            pid=os.getpid(),
        )

    def _https_context(self) -> ssl.SSLContext:
        """The HTTPS listener's context: uvicorn keeps the one it is given, so each
        handshake is moved (at the ClientHello, with or without SNI) to the certificate
        loaded last, and a SIGHUP reload applies to HTTPS as to every other listener."""
        base = self.load_tls()

        def current(conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
            if self._tls is not None:
                conn.context = self._tls

        base.sni_callback = current
        return base

    def _resolver(self) -> Resolver:
        dns = self.config.dns
        try:
            return DnsResolver(
                dns.nameservers,
                port=dns.port,
                timeout=dns.timeout,
                lifetime=dns.lifetime,
                prefer_ipv6=dns.prefer_ipv6,
            )
        except ConfigError as exc:
            log_event(log, logging.ERROR, "dns.unconfigured", error=str(exc))
            return UnconfiguredResolver(str(exc))

    async def _send_dsn(self, dsn: Dsn) -> None:
        """A DSN from the queue goes through the pipeline like any message: into a local
        mailbox, or back into the queue, from the null sender (RFC 3461 §6.2)."""
        if self.pipeline is None:  # pragma: no cover - the runner starts after the pipeline
            return
        await self.pipeline.inject("", [dsn.to], dsn.data, submission=False, source="DSN")

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        for access in (self.pop3, self.imap):
            if access is not None:
                access.close()
        for listener in (self.http, self.https):
            if listener is not None:
                await listener.shutdown()
        if self.webhooks is not None:
            await self.webhooks.stop(self.config.smtp.shutdown_grace)
        if self.scheduled is not None:
            await self.scheduled.stop(self.config.smtp.shutdown_grace)
        if self.runner is not None:
            await self.runner.stop(self.config.smtp.shutdown_grace)
        if self.submission is not None:
            await self.submission.shutdown(self.config.smtp.shutdown_grace)
        if self.smtp is not None:
            await self.smtp.shutdown(self.config.smtp.shutdown_grace)
        if self.pop3 is not None:
            await self.pop3.shutdown(self.config.pop3.shutdown_grace)
        if self.imap is not None:
            await self.imap.shutdown(self.config.imap.shutdown_grace)
        if self.store is not None:
            await self.store.close()
            self.store = None
        meter.flush()  # what this worker counted lately stays in the sums
        log_event(log, logging.INFO, "app.stopped", pid=os.getpid())

    async def serve_forever(self, *, banner: bool = True) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        if banner:
            print_banner(self.config, self.addresses, 1)
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()


class _KeyCache:
    """A domain's DKIM keys, read from their files at most once a minute (a key made by
    ``mailwright domain add`` is used within that time, without a restart)."""

    def __init__(self, keys: DkimKeyStore, ttl: float = 60.0) -> None:
        self._keys = keys
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[DkimKey]]] = {}

    def get(self, domain: str) -> list[DkimKey]:
        now = time.monotonic()
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = self._keys.keys(domain)
        except OSError as exc:
            log_event(log, logging.ERROR, "dkim.keys_unreadable", domain=domain, error=str(exc))
            found = []
        self._cache[domain] = (now + self._ttl, found)
        return found


def public_url(config: Config, sockets: Sockets) -> str:
    """Where links in messages point: ``http.public_url``, else the first HTTPS address,
    else the first HTTP one."""
    if config.http.public_url:
        return config.http.public_url.rstrip("/")
    scheme, sock = ("https", sockets.https[0]) if sockets.https else ("http", sockets.http[0])
    host, port = address_of(sock)
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def bind_listeners(config: Config) -> Sockets:
    def bind_all(items: tuple[str, ...]) -> list[socket.socket]:
        return [bind(*parse_listen(item)) for item in items]

    return Sockets(
        smtp=bind_all(config.smtp.listen),
        submission=bind_all(config.submission.listen),
        submissions=bind_all(config.submission.listen_tls),
        pop3=bind_all(config.pop3.listen),
        pop3s=bind_all(config.pop3.listen_tls),
        imap=bind_all(config.imap.listen),
        imaps=bind_all(config.imap.listen_tls),
        http=bind_all(config.http.listen),
        https=bind_all(config.http.listen_tls),
    )


def address_of(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return str(name[0]), int(name[1])


def addresses_of(sockets: Sockets) -> dict[str, list[tuple[str, int]]]:
    return {
        "smtp": [address_of(s) for s in sockets.smtp],
        "submission": [address_of(s) for s in sockets.submission],
        "submissions": [address_of(s) for s in sockets.submissions],
        "pop3": [address_of(s) for s in sockets.pop3],
        "pop3s": [address_of(s) for s in sockets.pop3s],
        "imap": [address_of(s) for s in sockets.imap],
        "imaps": [address_of(s) for s in sockets.imaps],
        "http": [address_of(s) for s in sockets.http],
        "https": [address_of(s) for s in sockets.https],
    }


_BANNER_NAMES = {
    "smtp": "SMTP (inbound, STARTTLS)",
    "submission": "Submission (STARTTLS)",
    "submissions": "Submissions (implicit TLS)",
    "pop3": "POP3 (STLS)",
    "pop3s": "POP3S (implicit TLS)",
    "imap": "IMAP (STARTTLS)",
    "imaps": "IMAPS (implicit TLS)",
    "http": "HTTP API (/v1, /docs)",
    "https": "HTTPS API (/v1, /docs)",
}


def print_banner(config: Config, addresses: dict[str, list[tuple[str, int]]], workers: int) -> None:
    lines = [
        f"mailwright is running for {config.hostname} (data in {config.data_dir},"
        f" {workers} worker process{'es' if workers > 1 else ''})"
    ]
    for kind, name in _BANNER_NAMES.items():
        for host, port in addresses.get(kind, []):
            lines.append(f"  {name:<25} {host}:{port}")
    lines.append("Stop with Ctrl-C (SIGTERM); reload the TLS certificate with SIGHUP.")
    print("\n".join(lines), flush=True)


def _run_loop(app: App, *, banner: bool) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(app.serve_forever(banner=banner))
    else:
        uvloop.run(app.serve_forever(banner=banner))


def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT; exit status 0 on a clean stop."""
    workers = config.workers or len(usable_cpus())
    # Before any worker counts anything: a scrape sums every process's files there.
    metrics_dir = Path(config.data_dir) / "run" / "metrics"
    meter.prepare_directory(metrics_dir)
    meter.use_directory(metrics_dir)
    if workers == 1:
        with contextlib.suppress(KeyboardInterrupt):
            _run_loop(App(config), banner=True)
        sys.stdout.flush()
        return 0
    return Supervisor(config, workers).run()


class Supervisor:
    """Binds the sockets, forks ``workers`` processes, forwards signals, restarts the dead."""

    _SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.children: dict[int, int] = {}  # pid -> worker number
        self.started: dict[int, float] = {}  # worker number -> start time
        self.stopping = False
        self.cpus = usable_cpus()

    def run(self) -> int:
        # Crash recovery (the blob sweep) happens once, before any worker writes.
        async def recover() -> None:
            store = await asyncio.to_thread(SqliteStore, Path(self.config.data_dir), sweep=True)
            await store.close()

        asyncio.run(recover())
        App(self.config).load_tls()  # a bad certificate stops us here, not in every worker
        sockets = bind_listeners(self.config)
        shared = Shared.create(self.config, self.workers)
        signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)
        sys.stdout.flush()  # or every worker inherits, and later repeats, what is buffered
        sys.stderr.flush()
        for n in range(self.workers):
            self._spawn(n, sockets, shared)
        print_banner(self.config, addresses_of(sockets), self.workers)
        log_event(log, logging.INFO, "supervisor.started", workers=self.workers, pid=os.getpid())
        while self.children:
            sig = signal.sigwait(self._SIGNALS)
            if sig in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                self.stopping = True
                self._forward(signal.SIGTERM)
                self._wait_children(self.config.smtp.shutdown_grace + 10)
            elif sig == signal.SIGHUP:
                self._forward(signal.SIGHUP)
            elif sig == signal.SIGCHLD:
                self._reap(sockets, shared)
        log_event(log, logging.INFO, "supervisor.stopped")
        return 0

    def _spawn(self, n: int, sockets: Sockets, shared: Shared) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = n
            self.started[n] = time.monotonic()
            return
        code = 0
        try:
            _die_with(parent)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._SIGNALS)
            shared.set_worker(n)
            if self.config.pin_workers:
                _pin(n, self.cpus)
            _run_loop(App(self.config, sockets=sockets, shared=shared, sweep=False), banner=False)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _forward(self, sig: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self, sockets: Sockets, shared: Shared) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            n = self.children.pop(pid, None)
            if n is None:
                continue
            shared.clear_worker(n)
            meter.process_dead(pid)
            if self.stopping:
                continue
            log_event(log, logging.ERROR, "worker.died", worker=n, pid=pid, status=status)
            if time.monotonic() - self.started.get(n, 0) < 1.0:
                time.sleep(1.0)  # a worker that cannot start must not spin
            self._spawn(n, sockets, shared)

    def _wait_children(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(0.05)
        self._forward(signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (a container's or ``taskset``'s set, not every CPU
    of the machine), in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def _pin(n: int, cpus: list[int]) -> None:
    """Keep worker ``n`` (its event loop and every thread it starts later) on one CPU,
    round robin over ``cpus``. The loop and the store threads take turns holding the
    interpreter lock: on one CPU a turn passes within the CPU, where threads spread over
    CPUs hand it back and forth between them at the cost of a cross-CPU wakeup each
    time (see the README's performance section for what it measured)."""
    cpu = cpus[n % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError) as exc:  # pragma: no cover - a CPU set changed since
        log_event(log, logging.WARNING, "worker.unpinned", worker=n, cpu=cpu, error=str(exc))


def _die_with(parent: int) -> None:
    """Linux: this worker gets SIGKILL when the supervisor dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
