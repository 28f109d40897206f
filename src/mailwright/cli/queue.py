"""``mailwright queue``, ``send`` and ``history``: the outbound queue and a message's life.

The commands work on the store directly, beside a running server: ``retry`` and ``flush``
make entries due now, and the server's queue runner takes them within its poll interval
(``queue.poll_interval``); ``send`` hands a message to the same pipeline as SMTP
submission (Message-ID and Date when missing, DKIM signature, local delivery or queue).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mailwright.cli.common import CliError, _address, _load, _run, _with_store
from mailwright.config import Config
from mailwright.intake.pipeline import Pipeline
from mailwright.intake.routing import Router
from mailwright.store.api import MailEvent, QueueEntry
from mailwright.store.dkimkeys import DkimKeyStore
from mailwright.store.sqlite import SqliteStore


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry_line(e: QueueEntry) -> str:
    reply = e.last_reply.replace("\n", " ")[:60]
    return (
        f"{e.queue_id}  {_when(e.received_at)}  <{e.sender}> -> <{e.recipient}>"
        f"  tries={e.attempts}  next={_when(e.next_attempt)}"
        + (f"  last: {reply}" if reply else "")
    )


def _event_line(e: MailEvent) -> str:
    detail = " ".join(f"{k}={v!r}" for k, v in sorted(e.detail.items()))
    who = f" <{e.recipient}>" if e.recipient else ""
    return f"{_when(e.time)}  {e.queue_id}  {e.type:<9}{who}  {detail}".rstrip()


def cmd_queue(args: argparse.Namespace) -> int:
    config = _load(args)
    action = args.queue_action

    async def go(store: SqliteStore) -> int:
        q = store.queue
        if action == "list":
            entries = await q.list_queue()
            for e in entries:
                print(_entry_line(e))
            messages = len({e.queue_id for e in entries})
            print(f"{messages} message(s), {len(entries)} recipient(s) queued")
            return 0
        if action == "show":
            entries = await q.list_queue(args.id)
            events = await q.events(args.id)
            if not entries and not events:
                raise CliError(f"no message {args.id} in the queue or its history")
            for e in entries:
                print(_entry_line(e))
            if not entries:
                print(f"{args.id}: not in the queue any more")
            for ev in events:
                print(_event_line(ev))
            return 0
        if action == "retry":
            n = await q.retry(args.id, int(time.time()))
            if not n:
                raise CliError(f"no message {args.id} in the queue")
            print(f"{n} recipient(s) of {args.id} due now")
            return 0
        if action == "flush":
            n = await q.retry(None, int(time.time()))
            print(f"{n} recipient(s) due now")
            return 0
        n = await q.delete(args.id)  # "delete"
        if not n:
            raise CliError(f"no message {args.id} in the queue")
        print(f"deleted {n} recipient(s) of {args.id} (no bounce sent)")
        return 0

    return _run(_with_store(config, go))


def cmd_history(args: argparse.Namespace) -> int:
    config = _load(args)

    async def go(store: SqliteStore) -> int:
        events = await store.queue.events(args.id)
        if not events:
            raise CliError(f"no history for {args.id} (a queue id or a Message-ID)")
        for ev in events:
            print(_event_line(ev))
        return 0

    return _run(_with_store(config, go))


def pipeline_for(config: Config, store: SqliteStore) -> Pipeline:
    keys = DkimKeyStore(Path(config.data_dir))
    return Pipeline(
        Router(store.accounts, config.smtp.subaddress_delimiter, hostname=config.hostname),
        store.messages,
        config.hostname,
        dkim_keys=keys.keys,
        max_header_size=config.smtp.max_header_size,
        max_mime_depth=config.smtp.max_mime_depth,
        queue=store.queue,
    )


def cmd_send(args: argparse.Namespace) -> int:
    config = _load(args)
    sender = _address(args.sender) if args.sender else ""
    recipients = [_address(r) for r in args.to]
    if args.file in (None, "-"):
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    if len(data) > config.smtp.max_message_size:
        raise CliError(
            f"message larger than smtp.max_message_size ({config.smtp.max_message_size})"
        )
    # A message from a file may have Unix line ends; on the wire it has CRLF.
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    async def go(store: SqliteStore) -> int:
        pipeline = pipeline_for(config, store)
        tx, result, refused = await pipeline.inject(sender, recipients, data, source="local")
        for r in refused:
            print(f"mailwright: refused {r}: unknown local user or bad address", file=sys.stderr)
        if not tx.recipients:
            raise CliError("no recipient accepted; nothing sent")
        local = len(result.delivered)
        print(
            f"queued as {tx.queue_id}: {local} local delivery(ies), "
            f"{result.queued} remote recipient(s) queued"
        )
        return 1 if refused else 0

    return _run(_with_store(config, go))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = sub.add_parser("queue", help="the outbound queue")
    qsub = queue.add_subparsers(dest="queue_action", required=True)
    qsub.add_parser("list", help="every queued recipient")
    qsub.add_parser("show", help="one message's entries and history").add_argument("id")
    qsub.add_parser("retry", help="make one message due now").add_argument("id")
    qsub.add_parser("delete", help="drop a message from the queue (no bounce)").add_argument("id")
    qsub.add_parser("flush", help="make every queued message due now")
    queue.set_defaults(func=cmd_queue)

    send = sub.add_parser("send", help="send a message (a file, or stdin) through the pipeline")
    send.add_argument("file", nargs="?", help="the message (RFC 5322); stdin when absent or -")
    send.add_argument("--from", dest="sender", default="", help="envelope sender (empty: <>)")
    send.add_argument("--to", action="append", required=True, help="a recipient (repeatable)")
    send.set_defaults(func=cmd_send)

    history = sub.add_parser("history", help="one message's whole life, by queue id or Message-ID")
    history.add_argument("id")
    history.set_defaults(func=cmd_history)
