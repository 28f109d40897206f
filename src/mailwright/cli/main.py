"""``mailwright`` command line. Exit status: 0 ok, 1 error (message on stderr), 2 usage."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailwright import __version__
from mailwright.config import ENV_CONFIG, load_config
from mailwright.core.address import Address, AddressError
from mailwright.core.errors import ConfigError, MailwrightError
from mailwright.core.log import configure as configure_logging
from mailwright.policy.password import hash_password
from mailwright.store.errors import NotFound
from mailwright.store.sqlite import SqliteStore

if TYPE_CHECKING:  # dkimpy is imported only by the commands that sign or print keys
    from mailwright.message.dkim import DkimKey

from mailwright.cli.common import (
    CliError,
    _address,
    _config_path,
    _load,
    _run,
    _with_store,
)

CONFIG_NAME = "mailwright.toml"
DEMO_PASSWORD_FILE = "demo-password.txt"

_TEMPLATE = """\
# mailwright configuration. Every key is optional except data_dir; the README's
# "Configuration" section lists each one with its default. Environment variables
# MAILWRIGHT_<SECTION>__<KEY> override this file (e.g. MAILWRIGHT_SMTP__LISTEN).

data_dir = "."          # relative to this file: database, blobs, TLS files
hostname = "{hostname}"

[smtp]                  # inbound SMTP (the port-25 role)
listen = ["127.0.0.1:2525"]
max_message_size = 26214400
max_recipients = 1000
bare_lf = "reject"      # or "normalize"

[submission]            # mail clients and applications send here (RFC 6409): AUTH first
listen = ["127.0.0.1:2587"]       # STARTTLS (the port-587 role)
listen_tls = ["127.0.0.1:2465"]   # implicit TLS (the port-465 role)
allow_plaintext = "loopback"      # AUTH without TLS: "never", "loopback", "always"

[queue]                 # delivery to other servers: retries, then a bounce
retry_schedule = [60, 300, 900, 1800, 3600]   # seconds; the last repeats
max_age = 432000        # 5 days, then the message bounces
delay_warning = 14400   # a "delayed" notice to the sender after 4 hours

[dns]                   # for delivery by MX; empty: the system's resolvers
nameservers = []

[pop3]                  # POP3 download (RFC 1939)
listen = ["127.0.0.1:2110"]       # STLS offered (the port-110 role)
listen_tls = ["127.0.0.1:2995"]   # implicit TLS (the port-995 role)
allow_plaintext = "loopback"      # passwords without TLS: "never", "loopback", "always"

[imap]                  # IMAP4rev1/rev2 (RFC 3501, RFC 9051)
listen = ["127.0.0.1:2143"]       # STARTTLS offered (the port-143 role)
listen_tls = ["127.0.0.1:2993"]   # implicit TLS (the port-993 role)
allow_plaintext = "loopback"      # passwords without TLS: "never", "loopback", "always"

[http]                  # the HTTP sending API (/v1) and its docs page (/docs)
listen = ["127.0.0.1:8080"]
listen_tls = []                   # HTTPS with [tls]'s certificate, e.g. ["0.0.0.0:443"]

[webhooks]              # the HTTP API's signed POSTs of events
allowed_networks = []             # private networks they may reach, e.g. ["127.0.0.0/8"]

[auth]                  # failed logins, counted across protocols and workers
max_ip_failures = 20
max_user_failures = 10

[tls]                   # TLS 1.2+; SIGHUP reloads these files
cert = "tls/cert.pem"
key = "tls/key.pem"

[log]
format = "logfmt"       # or "json"
level = "info"
"""


def _domain(text: str) -> str:
    try:
        return Address.parse(f"postmaster@{text.strip()}", utf8=True).domain
    except AddressError:
        raise CliError(f"bad domain {text!r}") from None


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"([0-9]+)(?:([KMGT])(?:I?B)?|B)?", re.ASCII)


def parse_size(text: str) -> int | None:
    """A quota: bytes, or with a binary suffix (100M = 100 MiB, 2G, 512K; "B", "iB" and
    the case are optional); "none" or "unlimited" for no limit."""
    t = text.strip().upper().replace(" ", "")
    if t in ("NONE", "UNLIMITED"):
        return None
    m = _SIZE.fullmatch(t)
    if m is None:
        raise CliError(f"bad size {text!r}: use bytes or a number with K, M, G or T, or none")
    return int(m[1]) * _SIZE_UNITS[m[2] or ""]


def _human(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _SIZE_UNITS[unit] and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return str(n)


def _read_password(args: argparse.Namespace) -> str:
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("passwords differ")
    else:
        raise CliError("no password: use --password-stdin (or run in a terminal)")
    if not password:
        raise CliError("empty password")
    return password


# -- commands ------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from mailwright.serve.tls import make_self_signed

    data_dir = Path(args.data_dir).resolve()
    domain = _domain(args.domain)
    hostname = args.hostname or f"mx.{domain}"
    config_file = data_dir / CONFIG_NAME
    # Check everything init would write before writing anything: a data directory
    # whose config was lost must not get a new TLS key and then fail on its database.
    for existing in (config_file, data_dir / "tls/cert.pem", data_dir / "tls/key.pem",
                     data_dir / "mailwright.db"):  # fmt: skip
        if existing.exists():
            raise CliError(f"{existing} already exists; not overwriting")
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(_TEMPLATE.format(hostname=hostname))
    config = load_config(config_file)
    make_self_signed(data_dir / "tls/cert.pem", data_dir / "tls/key.pem", hostname)

    async def setup(store: SqliteStore) -> str | None:
        await store.add_domain(domain)
        if not args.demo_user:
            return None
        password = secrets.token_urlsafe(12)
        await store.add_account(f"demo@{domain}", hash_password(password))
        return password

    password = _run(_with_store(config, setup))
    keys = _create_dkim_keys(data_dir, domain)
    print(f"Initialised {data_dir} for domain {domain} (hostname {hostname})")
    print(f"Config: {config_file}")
    _print_dkim_hint(domain, keys)
    if password is not None:
        (data_dir / DEMO_PASSWORD_FILE).write_text(f"demo@{domain} {password}\n")
        os.chmod(data_dir / DEMO_PASSWORD_FILE, 0o600)
        print(f"Demo user: demo@{domain}  password: {password}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mailwright.app import run

    config = _load(args)
    configure_logging(config.log.format, config.log.level)
    demo = Path(config.data_dir) / DEMO_PASSWORD_FILE
    if demo.exists():
        user, _, password = demo.read_text().strip().partition(" ")
        print(f"Demo user: {user}  password: {password}")
    return run(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from mailwright.app import App

    App(_load(args)).load_tls()  # the same loading `serve` does, certificate included
    print(f"{_config_path(args)}: ok")
    return 0


def _create_dkim_keys(data_dir: Path, domain: str) -> list[DkimKey]:
    from mailwright.store.dkimkeys import DkimKeyStore

    if domain.startswith("["):
        return []  # an address literal has no DNS name to publish keys under
    return DkimKeyStore(data_dir).create(domain)


def _print_dkim_hint(domain: str, keys: Sequence[DkimKey]) -> None:
    if keys:
        names = ", ".join(f"{k.selector} ({k.algorithm})" for k in keys)
        print(f"DKIM keys: {names}")
        print(f"Publish the DNS records it needs: mailwright dns {domain}")


def cmd_domain(args: argparse.Namespace) -> int:
    from mailwright.store.dkimkeys import DkimKeyStore

    config = _load(args)
    data_dir = Path(config.data_dir)

    async def go(store: SqliteStore) -> None:
        if args.action == "add":
            domain = _domain(args.name)
            await store.add_domain(domain)
            keys = await asyncio.to_thread(_create_dkim_keys, data_dir, domain)
            print(f"added domain {domain}")
            _print_dkim_hint(domain, keys)
        elif args.action == "remove":
            domain = _domain(args.name)
            # The keys go only once the domain has: a refused removal keeps its signing.
            await store.remove_domain(domain)
            if not domain.startswith("["):
                await asyncio.to_thread(DkimKeyStore(data_dir).remove, domain)
            print(f"removed domain {domain}")
        else:
            for d in await store.list_domains():
                print(d.name)

    _run(_with_store(config, go))
    return 0


_DNS_TTL = 3600


def _txt(value: str) -> str:
    """An ASCII TXT value as zone-file character-strings: RFC 1035 §3.3 limits each to
    255 octets, and RFC 6376 §3.6.2.2 joins a key record's strings back without spaces."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    # RFC 1035 §5.1: inside quotes, a backslash escapes the next character.
    escaped = (c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks)
    return " ".join(f'"{c}"' for c in escaped)


def _fqdn(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise CliError(f"bad hostname {name!r} in the config") from None
    return name + "."


def cmd_dns(args: argparse.Namespace) -> int:
    from mailwright.message.dkim import ascii_domain, dns_record

    config = _load(args)
    domain = _domain(args.domain)

    async def known(store: SqliteStore) -> bool:
        return domain in {d.name for d in await store.list_domains()}

    if not _run(_with_store(config, known)):
        raise CliError(f"no domain {domain}; add it with: mailwright domain add {domain}")
    # A domain added before DKIM existed gets its keys now (create keeps existing ones).
    keys = _create_dkim_keys(Path(config.data_dir), domain)
    zone = ascii_domain(domain) + "."
    host = _fqdn(config.hostname)

    def record(name: str, rtype: str, value: str) -> str:
        return f"{name}\t{_DNS_TTL}\tIN\t{rtype}\t{value}"

    lines = [
        f"; DNS records for {domain}, in zone-file form (RFC 1035 §5).",
        f"; MX (RFC 5321 §5.1): other servers deliver mail for {domain} to {host}",
        f"; {host} needs A and/or AAAA records with this server's public addresses,",
        f"; and the PTR record of each of those addresses should name {host}",
    ]
    if "." not in host.rstrip("."):
        lines.append(
            f"; warning: hostname {config.hostname!r} is not a full name: set it in the config"
        )
    lines += [
        record(zone, "MX", f"10 {host}"),
        f"; SPF (RFC 7208): only the hosts named by the MX records send mail from {domain}.",
        record(zone, "TXT", _txt("v=spf1 mx -all")),
        "; DKIM (RFC 6376, RFC 8463): the public keys that check this server's signatures.",
    ]
    lines += [
        record(
            f"{k.selector}._domainkey.{zone}", "TXT", _txt(dns_record(k.private_key, k.algorithm))
        )
        for k in keys
    ]
    lines += [
        "; DMARC (RFC 7489): receivers quarantine mail from this domain that passes neither",
        f"; aligned SPF nor DKIM, and send reports to postmaster@{domain} (make it reach someone).",
        record(
            f"_dmarc.{zone}",
            "TXT",
            _txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{ascii_domain(domain)}"),
        ),
    ]
    print("\n".join(lines))
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    config = _load(args)
    address = _address(args.address) if getattr(args, "address", None) else None
    password = _read_password(args) if args.action in ("add", "passwd") else None

    async def go(store: SqliteStore) -> None:
        if args.action == "add" and address and password:
            await store.add_account(address, hash_password(password))
            print(f"added user {address}")
        elif args.action == "passwd" and address and password:
            await store.set_password(address, hash_password(password))
            print(f"changed password of {address}")
        elif args.action == "remove" and address:
            await store.remove_account(address)
            print(f"removed user {address} and its mail")
        elif args.action == "quota" and address:
            if args.size is not None:
                await store.set_quota(address, parse_size(args.size))
            account = await store.get_account(address)
            if account is None:
                raise NotFound(f"no user {address}")
            quota = account.quota_bytes
            limit = "no quota" if quota is None else f"quota {quota} bytes"
            if quota is not None and _human(quota) != str(quota):
                limit += f" ({_human(quota)})"
            print(f"{address}: {limit}, {account.used_bytes} bytes used")
        else:
            domain = _domain(args.domain) if args.domain else None
            for a in await store.list_accounts(domain):
                print(a.address)

    _run(_with_store(config, go))
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    config = _load(args)

    def source(text: str) -> str:
        return "@" + _domain(text[1:]) if text.startswith("@") else _address(text)

    async def go(store: SqliteStore) -> None:
        if args.action == "add":
            src = source(args.source)
            targets = [_address(t) for t in args.targets]
            local = {d.name for d in await store.list_domains()}
            for t in targets:
                if t.rsplit("@", 1)[1] not in local:
                    raise CliError(
                        f"alias target {t} is not in a local domain; remote targets need the"
                        " outbound queue, which this version does not have yet"
                    )
            await store.add_alias(src, targets)
            print(f"added alias {src} -> {', '.join(targets)}")
        elif args.action == "remove":
            src = source(args.source)
            target = _address(args.target) if args.target else None
            await store.remove_alias(src, target)
            print(f"removed alias {src}" + (f" -> {target}" if target else ""))
        else:
            domain = _domain(args.domain) if args.domain else None
            for alias in await store.list_aliases(domain):
                print(f"{alias.source} -> {', '.join(alias.targets)}")

    _run(_with_store(config, go))
    return 0


def cmd_mailbox(args: argparse.Namespace) -> int:
    config = _load(args)
    address = _address(args.address)

    async def go(store: SqliteStore) -> None:
        account = await store.get_account(address)
        if account is None:
            raise NotFound(f"no user {address}")
        boxes = await store.list_mailboxes(account.id)
        width = max(len(b.name) for b in boxes) if boxes else 7
        for b in boxes:
            print(f"{b.name:<{width}}  {b.messages:>8}  {b.size:>12}")

    _run(_with_store(config, go))
    return 0


# -- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailwright", description="A complete, self-hosted mail server."
    )
    p.add_argument("--config", metavar="FILE", help=f"config file (default: ${ENV_CONFIG})")
    p.add_argument("--version", action="version", version=f"mailwright {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create a data directory with config, TLS and a domain")
    init.add_argument("--data-dir", required=True, metavar="DIR")
    init.add_argument("--domain", default="example.test")
    init.add_argument("--hostname", help="this server's name (default mx.DOMAIN)")
    init.add_argument("--demo-user", action="store_true", help="also create demo@DOMAIN")
    init.set_defaults(func=cmd_init)

    sub.add_parser("serve", help="run every listener").set_defaults(func=cmd_serve)
    sub.add_parser("check-config", help="validate the config file").set_defaults(
        func=cmd_check_config
    )

    domain = sub.add_parser("domain", help="local domains")
    dsub = domain.add_subparsers(dest="action", required=True)
    for action in ("add", "remove"):
        dsub.add_parser(action).add_argument("name")
    dsub.add_parser("list")
    domain.set_defaults(func=cmd_domain)

    dns = sub.add_parser(
        "dns", help="print the DNS records a domain needs: MX, SPF, DKIM, DMARC (zone-file form)"
    )
    dns.add_argument("domain")
    dns.set_defaults(func=cmd_dns)

    user = sub.add_parser("user", help="mail users (accounts)")
    usub = user.add_subparsers(dest="action", required=True)
    for action in ("add", "passwd"):
        u = usub.add_parser(action)
        u.add_argument("address")
        u.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    usub.add_parser("remove").add_argument("address")
    usub.add_parser("list").add_argument("--domain")
    q = usub.add_parser("quota", help="show or set a user's storage quota (RFC 9208)")
    q.add_argument("address")
    q.add_argument("size", nargs="?", help="bytes, or 100M, 2G...; none for no limit")
    user.set_defaults(func=cmd_user)

    alias = sub.add_parser("alias", help="aliases (one or many targets; @domain is a catch-all)")
    asub = alias.add_subparsers(dest="action", required=True)
    a_add = asub.add_parser("add")
    a_add.add_argument("source", help="local@domain or @domain")
    a_add.add_argument("targets", nargs="+")
    a_rm = asub.add_parser("remove")
    a_rm.add_argument("source")
    a_rm.add_argument("target", nargs="?")
    asub.add_parser("list").add_argument("--domain")
    alias.set_defaults(func=cmd_alias)

    mailbox = sub.add_parser("mailbox", help="a user's mailboxes")
    msub = mailbox.add_subparsers(dest="action", required=True)
    msub.add_parser("list").add_argument("address")
    mailbox.set_defaults(func=cmd_mailbox)
    # Imported here: the module uses this one's helpers.
    from mailwright.cli import apikey as apikey_commands
    from mailwright.cli import queue as queue_commands

    queue_commands.register(sub)
    apikey_commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"mailwright: config error: {exc.key}: {exc.problem}", file=sys.stderr)
    except (CliError, MailwrightError) as exc:
        print(f"mailwright: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
