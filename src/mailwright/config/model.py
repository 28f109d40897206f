"""The configuration's shape and defaults. Every field here is documented in the README."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Literal

from mailwright.core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    """``items`` (checked CIDR strings) as networks."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in items)


def _check_networks(key: str, items: tuple[str, ...]) -> None:
    """Each of ``items`` is a CIDR network; the first that is not names ``key[i]``."""
    for i, item in enumerate(items):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{key}[{i}]", "must be an IP network such as 10.0.0.0/8") from None


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: Literal["logfmt", "json"] = "logfmt"
    level: Literal["trace", "debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str = "tls/cert.pem"  # relative paths are relative to data_dir
    key: str = "tls/key.pem"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The port-25 role: inbound mail for local domains."""

    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    max_message_size: int = 25 * 1024 * 1024
    max_line: int = 2048
    max_data_line: int = 1024 * 1024
    max_recipients: int = 1000
    max_header_size: int = 100 * 1024
    max_mime_depth: int = 50
    max_errors: int = 20
    error_delay: float = 1.0  # seconds added to each reply past max_errors / 2
    bare_lf: Literal["reject", "normalize"] = "reject"
    eight_bit_headers: Literal["accept", "reject"] = "accept"
    idle_timeout: float = 300.0  # a whole command line must arrive within this
    tls_handshake_timeout: float = 60.0
    session_timeout: float = 1800.0
    shutdown_grace: float = 30.0
    max_connections: int = 2000
    max_connections_per_ip: int = 50
    subaddress_delimiter: str = "+"
    # Clients in these networks (CIDR) may relay without AUTH, on every SMTP listener.
    # Default none: only authenticated users relay, so the server is never an open relay.
    trusted_networks: tuple[str, ...] = ()

    @property
    def networks(self) -> tuple[Network, ...]:
        return _networks(self.trusted_networks)

    def __post_init__(self) -> None:
        _check_networks("smtp.trusted_networks", self.trusted_networks)


@dataclass(frozen=True, slots=True)
class SubmissionConfig:
    """Message submission (RFC 6409, RFC 8314) for users' mail clients and applications:
    AUTH required, then mail to anywhere. Limits and timeouts are those of [smtp]."""

    listen: tuple[str, ...] = ("127.0.0.1:2587",)  # STARTTLS (port 587's role)
    listen_tls: tuple[str, ...] = ("127.0.0.1:2465",)  # implicit TLS (port 465's role)
    # AUTH without TLS: "never", "loopback" (clients on 127.0.0.0/8, ::1) or "always".
    allow_plaintext: Literal["never", "loopback", "always"] = "loopback"
    sign_dkim: bool = True  # sign mail from local domains that have a DKIM key


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """The outbound queue: retries, bounces, concurrency."""

    # Seconds after each failed attempt; the last value repeats (RFC 5321 §4.5.4.1 asks
    # for at least 30 minutes between tries to one destination; the first ones are
    # quicker because most deferrals are greylisting and busy servers).
    retry_schedule: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0, 3600.0)
    max_age: float = 5 * 86400.0  # then the message bounces (RFC 5321 §4.5.4.1: 4-5 days)
    delay_warning: float = 4 * 3600.0  # a "delayed" DSN after this long; 0: never
    max_deliveries: int = 50  # concurrent outbound SMTP sessions in all
    max_per_destination: int = 20  # ... to one destination domain (Postfix's default)
    batch: int = 200  # entries claimed at once
    lease: float = 1200.0  # longer than one delivery attempt can take
    poll_interval: float = 5.0  # looks for entries queued by other processes this often
    # An outbound session is kept open this long after its last message, for the next
    # ones to the same destination; 0: QUIT at once.
    connection_cache_time: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_schedule or any(v <= 0 for v in self.retry_schedule):
            raise ConfigError(
                "queue.retry_schedule", "must be a non-empty list of positive seconds"
            )
        for name in ("max_age", "max_deliveries", "max_per_destination", "batch", "lease"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"queue.{name}", "must be greater than zero")
        if self.poll_interval <= 0:
            raise ConfigError("queue.poll_interval", "must be greater than zero")
        for name in ("delay_warning", "connection_cache_time"):
            if getattr(self, name) < 0:
                raise ConfigError(f"queue.{name}", "must not be negative")


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """POP3 (RFC 1939) for clients that download and delete."""

    listen: tuple[str, ...] = ("127.0.0.1:2110",)  # STLS offered (port 110's role)
    listen_tls: tuple[str, ...] = ("127.0.0.1:2995",)  # implicit TLS (port 995's role)
    # USER/PASS and AUTH without TLS: "never", "loopback" (clients on 127.0.0.0/8, ::1)
    # or "always".
    allow_plaintext: Literal["never", "loopback", "always"] = "loopback"
    idle_timeout: float = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
    login_timeout: float = 60.0  # before authentication
    tls_handshake_timeout: float = 30.0
    max_line: int = 1024
    max_errors: int = 10
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    shutdown_grace: float = 10.0


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """IMAP4rev1/IMAP4rev2 (RFC 3501, RFC 9051) for clients that keep mail on the server."""

    listen: tuple[str, ...] = ("127.0.0.1:2143",)  # STARTTLS offered (port 143's role)
    listen_tls: tuple[str, ...] = ("127.0.0.1:2993",)  # implicit TLS (port 993's role)
    # LOGIN and AUTHENTICATE without TLS: "never", "loopback" or "always".
    allow_plaintext: Literal["never", "loopback", "always"] = "loopback"
    # RFC 9051 §5.4: an autologout timer of at least 30 minutes once logged in (IDLE
    # clients re-issue IDLE every 29 minutes, RFC 2177 §3).
    idle_timeout: float = 1800.0
    login_timeout: float = 60.0  # before authentication
    tls_handshake_timeout: float = 30.0
    max_line: int = 64 * 1024  # a command's text without its literals (RFC 7162 §4: >= 8192)
    max_literal: int = 64 * 1024  # literals of one command after login (APPEND aside)
    max_append_size: int = 50 * 1024 * 1024  # the largest message APPEND takes
    max_errors: int = 20
    max_connections: int = 2000
    max_connections_per_ip: int = 50  # a client opens several (one per watched folder)
    shutdown_grace: float = 10.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Failed logins, counted across POP3, IMAP and submission and across workers."""

    window: float = 900.0  # seconds for a full bucket of failures to drain
    free_failures: int = 3  # failures answered without delay
    max_delay: float = 15.0  # the longest delay before a failure is answered
    max_ip_failures: int = 20  # per client address (IPv6: per /64) within the window
    max_user_failures: int = 10  # per user within the window
    # A successful login is remembered this long (seconds; 0: never), so a client that
    # polls every minute costs one argon2id verification per hour, not one per login.
    cache_ttl: float = 3600.0


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """The resolver for outbound delivery (MX, A, AAAA lookups)."""

    nameservers: tuple[str, ...] = ()  # IP addresses; empty: the system's (/etc/resolv.conf)
    port: int = 53
    timeout: float = 5.0  # one query to one nameserver
    lifetime: float = 20.0  # one lookup, all nameservers and retries together
    # Try a mail host's IPv6 addresses before its IPv4 ones. Off by default: on a machine
    # whose IPv6 does not reach the world, every IPv6 attempt would cost a timeout first.
    prefer_ipv6: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port <= 65535:
            raise ConfigError("dns.port", "must be between 1 and 65535")
        for name in ("timeout", "lifetime"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"dns.{name}", "must be greater than zero")


TlsPolicy = Literal["none", "opportunistic", "require", "verify"]
TLS_POLICIES: tuple[TlsPolicy, ...] = ("none", "opportunistic", "require", "verify")


@dataclass(frozen=True, slots=True)
class SmtpClientTimeouts:
    """Seconds. The defaults are RFC 5321 §4.5.3.2's."""

    connect: float = 30.0
    greeting: float = 300.0  # the initial 220
    command: float = 300.0  # EHLO, HELO, STARTTLS, AUTH, RSET, QUIT
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0  # the 354 after DATA
    data_block: float = 180.0  # each write of message data
    data_done: float = 600.0  # the reply after the final "."
    tls_handshake: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"outbound.timeouts.{f.name}", "must be greater than zero")


@dataclass(frozen=True, slots=True)
class SmarthostConfig:
    """Relay every outbound message through one host (a home server behind an ISP)."""

    host: str = ""  # empty: no smarthost; deliver by MX
    port: int = 587
    tls: Literal["starttls", "implicit"] = "starttls"  # TLS is always required
    verify: bool = True  # check the certificate chain and the host name
    username: str = ""  # empty: no AUTH
    password: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.port <= 65535:
            raise ConfigError("outbound.smarthost.port", "must be between 1 and 65535")
        if any(c in self.host for c in " \r\n\t\0"):
            raise ConfigError("outbound.smarthost.host", "must be a host name or address")
        if self.password and not self.username:
            raise ConfigError("outbound.smarthost.username", "required with a password")


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """Delivery to other mail servers."""

    helo_name: str = ""  # empty: the top-level hostname
    port: int = 25
    tls_policy: TlsPolicy = "opportunistic"
    # Per destination domain, "example.com=verify" (overrides tls_policy).
    tls_policies: tuple[str, ...] = ()
    ca_file: str = ""  # for "verify"; empty: the system's trust store
    timeouts: SmtpClientTimeouts = field(default_factory=SmtpClientTimeouts)
    smarthost: SmarthostConfig = field(default_factory=SmarthostConfig)

    def __post_init__(self) -> None:
        if not 0 < self.port <= 65535:
            raise ConfigError("outbound.port", "must be between 1 and 65535")
        for i, item in enumerate(self.tls_policies):
            domain, sep, policy = item.partition("=")
            if not sep or not domain.strip() or policy.strip() not in TLS_POLICIES:
                raise ConfigError(
                    f"outbound.tls_policies[{i}]",
                    f"must be DOMAIN=POLICY with POLICY one of {', '.join(TLS_POLICIES)}",
                )

    def policy_for(self, domain: str) -> TlsPolicy:
        """The TLS policy for mail to ``domain`` (exact match, case-insensitive)."""
        key = domain.lower().rstrip(".")
        for item in self.tls_policies:
            name, _, policy = item.partition("=")
            if name.strip().lower().rstrip(".") == key:
                for choice in TLS_POLICIES:
                    if choice == policy.strip():
                        return choice
        return self.tls_policy


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP listener: the sending API (/v1), its OpenAPI document and docs page."""

    listen: tuple[str, ...] = ("127.0.0.1:8080",)
    # HTTPS with the server's certificate (tls.cert, reloaded on SIGHUP); empty: none.
    listen_tls: tuple[str, ...] = ()
    # Every address the listener is reached at from outside ("https://mail.example.com"):
    # the base of tracking and unsubscribe links. Empty: http://<first listen address>.
    public_url: str = ""
    max_request_size: int = 40 * 1024 * 1024  # a JSON body (attachments are base64)
    max_batch: int = 500  # messages in one POST /v1/messages/batch
    max_recipients: int = 1000  # to + cc + bcc of one message
    metrics: bool = True  # GET /metrics (Prometheus), without a key

    def __post_init__(self) -> None:
        for name in ("max_request_size", "max_batch", "max_recipients"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"http.{name}", "must be greater than zero")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("http.public_url", "must start with http:// or https://")


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """Webhooks of the HTTP API: how often to look for new events, how long to wait for a
    receiver, and the retries of one that does not answer 2xx."""

    poll_interval: float = 1.0
    timeout: float = 10.0
    retry_schedule: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    batch: int = 100  # event rows in one POST at most
    max_concurrent: int = 8  # POSTs in flight per process
    # Non-public networks (CIDR) webhooks may reach; loopback, private and link-local
    # addresses outside these are refused. Public addresses are always allowed.
    allowed_networks: tuple[str, ...] = ()

    @property
    def networks(self) -> tuple[Network, ...]:
        return _networks(self.allowed_networks)

    def __post_init__(self) -> None:
        _check_networks("webhooks.allowed_networks", self.allowed_networks)
        if not self.retry_schedule or any(v <= 0 for v in self.retry_schedule):
            raise ConfigError(
                "webhooks.retry_schedule", "must be a non-empty list of positive seconds"
            )
        for name in ("poll_interval", "timeout", "batch", "max_concurrent"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"webhooks.{name}", "must be greater than zero")


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: str
    hostname: str = "localhost"
    workers: int = 0  # worker processes; 0 = one per CPU this process may use
    pin_workers: bool = True  # each worker on one CPU of its own (round robin)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    imap: ImapConfig = field(default_factory=ImapConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
