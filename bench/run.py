"""Benchmarks: mailwright side by side with the established peer, in one run.

    .venv/bin/python bench/run.py smtp [--messages N] [--sessions 1,10,50]
                                       [--recipients 1,5] [--size 5120]
                                       [--only mailwright|postfix|sink,...] [--quick]
    .venv/bin/python bench/run.py all   # every protocol bench (today: smtp)

Progress goes to stderr; a Markdown table (for the README) to stdout; the raw
numbers to bench/results/<protocol>-<UTC time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import machine, report, smtp
from harness.mailwright import MailwrightInstance
from harness.postfix import POSTFIX, PostfixInstance
from harness.sink import SMTP_SINK, SinkInstance

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVERS = ("sink", "postfix", "mailwright")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("numbers must be ≥ 1")
    return values


def _only(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SERVERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown server {bad}; choose from {', '.join(SERVERS)}")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("protocol", choices=["smtp", "all"])
    p.add_argument("--messages", type=int, default=None, help="messages per run (default 20000)")
    p.add_argument("--quick", action="store_true", help="2,000 messages per run (a first try)")
    p.add_argument("--sessions", type=_int_list, default=[1, 10, 50])
    p.add_argument("--recipients", type=_int_list, default=[1, 5])
    p.add_argument("--size", type=int, default=5120, help="message body bytes (default 5120)")
    p.add_argument(
        "--only",
        type=_only,
        default=list(SERVERS),
        help="comma list of servers: mailwright, postfix, sink (default: all three)",
    )
    p.add_argument(
        "--reuse", action="store_true", help="several messages per connection (smtp-source -d)"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds per smtp-source run")
    p.add_argument(
        "--drain-timeout", type=float, default=300, help="seconds for deliveries to land after it"
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up messages (default N/10, ≤200)")
    p.add_argument(
        "--idle-connections",
        type=int,
        default=1000,
        help="idle connections for the memory test (0 skips it)",
    )
    p.add_argument("--mailwright", default=str(REPO / ".venv" / "bin" / "mailwright"))
    p.add_argument(
        "--workdir", default=None, help="where instances keep their data (default $TMPDIR)"
    )
    p.add_argument("--results-dir", default=str(BENCH / "results"))
    args = p.parse_args(argv)
    if args.messages is None:
        args.messages = 2000 if args.quick else 20000
    if args.messages < 1 or args.size < 1:
        p.error("--messages and --size must be ≥ 1")
    if max(args.recipients) > smtp.MAX_RECIPIENTS:
        p.error(f"--recipients at most {smtp.MAX_RECIPIENTS} (the users both servers know)")
    if args.warmup is None:
        args.warmup = min(200, args.messages // 10)
    return args


def preflight(args: argparse.Namespace) -> list[str]:
    """Drop servers that cannot run here, saying why."""
    servers = list(args.only)
    for tool in (smtp.SMTP_SOURCE,):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} not found: apt-get install postfix (it ships smtp-source)")
    if "sink" in servers and not os.access(SMTP_SINK, os.X_OK):
        log(f"skipping smtp-sink: {SMTP_SINK} not found")
        servers.remove("sink")
    if "postfix" in servers:
        if not os.access(POSTFIX, os.X_OK):
            log("skipping Postfix: not installed (apt-get install postfix)")
            servers.remove("postfix")
        elif os.geteuid() != 0:
            log("skipping Postfix: a private Postfix instance must be started as root")
            servers.remove("postfix")
        else:
            st = subprocess.run([POSTFIX, "status"], capture_output=True, timeout=30, check=False)
            if st.returncode == 0:
                log("warning: the system Postfix is running and competes for CPU; stop it")
    if "mailwright" in servers:
        try:
            ok = (
                subprocess.run(
                    [args.mailwright, "--help"], capture_output=True, timeout=60, check=False
                ).returncode
                == 0
            )
        except OSError:
            ok = False
        if not ok:
            log(f"skipping mailwright: `{args.mailwright} --help` does not work")
            servers.remove("mailwright")
    return servers


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    return proc.stdout.strip() or "?"


def bench_smtp(args: argparse.Namespace, servers: list[str], workdir: str) -> dict[str, Any]:
    rcpts = smtp.recipients()
    settings = smtp.Settings(
        messages=args.messages,
        size=args.size,
        reuse=args.reuse,
        timeout=args.timeout,
        drain_timeout=args.drain_timeout,
        warmup=args.warmup,
    )
    factories = {
        "sink": lambda: SinkInstance(workdir=workdir),
        "postfix": lambda: PostfixInstance(rcpts, workdir=workdir),
        "mailwright": lambda: MailwrightInstance(args.mailwright, rcpts, workdir=workdir),
    }
    runs = []
    cases = [smtp.Case(s, r) for r in args.recipients for s in args.sessions]
    for i, case in enumerate(cases, 1):
        log(f"[{i}/{len(cases)}] {case.label}, {args.messages:,} messages")
        # Servers take turns within a case so slow drift (thermal, page cache) hits all.
        for name in SERVERS:
            if name in servers:
                runs.append(smtp.run_case(name, factories[name], case, settings, log))

    idle = []
    if args.idle_connections > 0:
        log(f"idle connections: {args.idle_connections:,}")
        smtp.raise_fd_limit(args.idle_connections * 2 + 1024)
        idle_factories = {
            "postfix": lambda: PostfixInstance(
                rcpts, workdir=workdir, smtpd_limit=args.idle_connections + 50
            ),
            "mailwright": lambda: MailwrightInstance(
                args.mailwright,
                rcpts,
                workdir=workdir,
                max_connections=args.idle_connections * 2 + 100,
            ),
        }
        for name in ("postfix", "mailwright"):
            if name not in servers:
                continue
            try:
                with idle_factories[name]() as server:
                    r = smtp.idle_connections(server, args.idle_connections)
            except Exception as e:  # keep the throughput results whatever happens here
                r = {"server": name, "connections": args.idle_connections, "error": repr(e)}
            idle.append(r)
            log(
                f"  {name}: "
                + (
                    f"extra RSS {r['extra_rss_mb']} MB, PSS {r['extra_pss_mb']} MB"
                    if "extra_rss_mb" in r
                    else ""
                )
                + (f" FAILED: {r['error']}" if "error" in r else "")
            )
    return {
        "settings": {
            "messages": args.messages,
            "size": args.size,
            "reuse": args.reuse,
            "warmup": args.warmup,
            "sessions": args.sessions,
            "recipients": args.recipients,
            "servers": servers,
        },
        "filesystem": smtp.fs_type(workdir),
        "recipient_addresses": rcpts,
        "runs": runs,
        "idle": idle,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    servers = preflight(args)
    if not servers:
        log("nothing to run")
        return 1
    command = ".venv/bin/python bench/run.py " + shlex.join(argv)
    workdir = tempfile.mkdtemp(prefix="mwbench-", dir=args.workdir)
    os.chmod(workdir, 0o755)  # Postfix's unprivileged daemons must reach their queue
    doc: dict[str, Any] = {
        "command": command,
        "machine": machine.describe(REPO),
        "postfix_version": _version(["/usr/sbin/postconf", "-h", "mail_version"]),
        "mailwright_version": _version([args.mailwright, "--version"]).replace("mailwright ", ""),
    }
    started = time.monotonic()
    try:
        doc["smtp"] = bench_smtp(args, servers, workdir)  # today the only protocol
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc["wall_seconds"] = round(time.monotonic() - started, 1)

    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"{args.protocol}-{stamp}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(report.markdown(doc))
    log(f"results: {out} ({doc['wall_seconds']:.0f}s)")
    failed = [r for r in doc["smtp"]["runs"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
