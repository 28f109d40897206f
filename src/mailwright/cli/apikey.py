"""``mailwright apikey create|list|revoke``: keys for the HTTP API.

A key's secret is printed once, by ``create``; the store keeps only its hash, so a lost
key is revoked and replaced, never shown again.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from mailwright.api.keys import SCOPES, check_scopes, new_key
from mailwright.cli.common import CliError, _load, _run, _with_store
from mailwright.store.api import ApiKey
from mailwright.store.errors import NotFound
from mailwright.store.sqlite import SqliteStore


def _key_line(k: ApiKey) -> str:
    when = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M")
    scopes = ",".join(sorted(k.scopes))
    domain = k.sender_domain or "any domain"
    state = "  REVOKED" if k.revoked else ""
    name = f"  {k.name}" if k.name else ""
    limits = ""
    if k.daily_quota is not None:
        limits += f"  {k.daily_quota}/day"
    if k.rate_limit is not None:
        limits += f"  {k.rate_limit}/s"
    return f"{k.id:>4}  {k.prefix}...  {scopes:<17}  {domain:<20}  {when}{limits}{name}{state}"


def _limit(text: str) -> int | None:
    """A limit: a positive number, or "none"."""
    if text.strip().lower() in ("none", "unlimited"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (or none)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (or none)")
    return value


def cmd_apikey(args: argparse.Namespace) -> int:
    config = _load(args)
    action = args.action

    async def go(store: SqliteStore) -> int:
        if action == "create":
            try:
                scopes = check_scopes(args.scope or ["send"])
            except ValueError as exc:
                raise CliError(str(exc)) from None
            domain = args.domain.strip().lower() if args.domain else None
            if domain is not None:
                local = {d.name.lower() for d in await store.accounts.list_domains()}
                if domain not in local:
                    raise CliError(f"{domain} is not a domain of this server")
            made = new_key()
            key = await store.api.create_key(
                args.name or "",
                made.prefix,
                made.secret_hash,
                scopes,
                domain,
                daily_quota=args.daily_quota,
                rate_limit=args.rate_limit,
            )
            print(made.secret)
            print(
                f"key {key.id} ({','.join(sorted(scopes))}; {domain or 'any local domain'}):"
                " shown this once; keep it secret",
            )
            return 0
        if action == "list":
            for k in await store.api.list_keys():
                print(_key_line(k))
            return 0
        if action == "limits":
            try:
                key = await store.api.set_key_limits(args.id, args.daily_quota, args.rate_limit)
            except NotFound:
                raise CliError(f"no API key {args.id}") from None
            print(_key_line(key))
            return 0
        try:  # "revoke"
            await store.api.revoke_key(args.id)
        except NotFound:
            raise CliError(f"no API key {args.id}") from None
        print(f"key {args.id} revoked")
        return 0

    return _run(_with_store(config, go))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = sub.add_parser("apikey", help="keys for the HTTP API")
    ksub = key.add_subparsers(dest="action", required=True)
    create = ksub.add_parser("create", help="make a key; its secret is printed once")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="send, read or manage; repeat for several (default: send)",
    )
    create.add_argument("--domain", help="may send only from this domain")
    create.add_argument("--name", help="a note to tell keys apart")
    for parser in (create, limits := ksub.add_parser("limits", help="set or lift a key's limits")):
        parser.add_argument(
            "--daily-quota", type=_limit, default=None, help="recipients per UTC day (or none)"
        )
        parser.add_argument(
            "--rate-limit", type=_limit, default=None, help="messages per second (or none)"
        )
    limits.add_argument("id", type=int)
    ksub.add_parser("list", help="every key (prefix, scopes, domain)")
    ksub.add_parser("revoke", help="a revoked key is refused at once").add_argument("id", type=int)
    key.set_defaults(func=cmd_apikey)
