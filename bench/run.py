"""Benchmarks: mailwright side by side with the established peer, in one run.

    .venv/bin/python bench/run.py smtp [--messages N] [--sessions 1,10,50]
                                       [--recipients 1,5] [--size 5120]
                                       [--only mailwright|postfix|sink,...] [--rounds K] [--quick]
    .venv/bin/python bench/run.py pop3 [--clients 10,50] [--pop3-sessions N]
                                       [--dovecot-scheme PLAIN,ARGON2ID]
                                       [--dovecot-mode default,performance]
                                       [--only mailwright|dovecot,...] [--quick]
    .venv/bin/python bench/run.py imap [--clients 10,50] [--imap-workloads sessions,persistent]
                                       [--imap-cycles N] [--imap-duration S]
                                       [--dovecot-mode default,performance]
                                       [--imap-idle-sessions 1000]
                                       [--only mailwright|dovecot,...] [--quick]
    .venv/bin/python bench/run.py outbound [--outbound-messages N] [--outbound-sessions 10]
                                           [--outbound-recipients 1] [--postfix-auth dovecot|none]
                                           [--only mailwright|postfix|postfix-dkim|sink,...]
                                           [--quick]
    .venv/bin/python bench/run.py all   # every bench: smtp, pop3, imap, then outbound

Progress goes to stderr; a Markdown table (for the README) to stdout; the raw
numbers to bench/results/<protocol>-<UTC time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import corpus, dovecot, imap, machine, outbound, pop3, report, smtp
from harness.dnsmasq import DNSMASQ, DnsmasqInstance
from harness.dovecot import DOVECOT, DovecotInstance
from harness.mailwright import PASSWORD, MailwrightInstance
from harness.postfix import POSTFIX, PostfixInstance
from harness.sink import SMTP_SINK, SinkInstance

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROTOCOLS = ("smtp", "pop3", "imap", "outbound")
SMTP_SERVERS = ("sink", "postfix", "mailwright")
POP3_SERVERS = ("dovecot", "mailwright")
IMAP_SERVERS = ("dovecot", "mailwright")
# Dovecot's binaries for each protocol (dovecot-pop3d, dovecot-imapd).
DOVECOT_PROTOCOL = {"pop3": "/usr/lib/dovecot/pop3", "imap": "/usr/lib/dovecot/imap"}
SERVERS = ("sink", "postfix", "postfix-dkim", "dovecot", "mailwright")


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


def _positive(text: str) -> int:
    values = _int_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"one number, not {text!r}")
    return values[0]


def _only(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SERVERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown server {bad}; choose from {', '.join(SERVERS)}")
    return names


def _schemes(text: str) -> list[str]:
    names = [x.strip().upper() for x in text.split(",") if x.strip()]
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a comma list of distinct Dovecot password schemes")
    return names


def _workloads(text: str) -> list[str]:
    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    if not names or set(names) - set(imap.WORKLOADS) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a comma list of: {', '.join(imap.WORKLOADS)}")
    return names


def _modes(text: str) -> list[str]:
    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    if not names or set(names) - {"default", "performance"} or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a comma list of: default, performance")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("protocol", choices=[*PROTOCOLS, "all"])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a first try: SMTP 2,000 messages per run, POP3 200 sessions per run, "
        "IMAP 3,000 cycles or 15 s per run, outbound 1,000 messages per run",
    )
    p.add_argument(
        "--only",
        type=_only,
        default=list(SERVERS),
        help="comma list of servers: mailwright, postfix, sink (SMTP, outbound), "
        "postfix-dkim (outbound: Postfix signing through OpenDKIM), dovecot (POP3, IMAP); "
        "default: all",
    )
    p.add_argument("--mailwright", default=str(REPO / ".venv" / "bin" / "mailwright"))
    p.add_argument(
        "--workdir", default=None, help="where instances keep their data (default $TMPDIR)"
    )
    p.add_argument("--results-dir", default=str(BENCH / "results"))

    g = p.add_argument_group("smtp")
    g.add_argument("--messages", type=int, default=None, help="messages per run (default 20000)")
    g.add_argument("--sessions", type=_int_list, default=[1, 10, 50])
    g.add_argument("--recipients", type=_int_list, default=[1, 5])
    g.add_argument(
        "--size",
        type=int,
        default=5120,
        help="message body bytes (default 5120; outbound: whole message, about)",
    )
    g.add_argument(
        "--reuse", action="store_true", help="several messages per connection (smtp-source -d)"
    )
    g.add_argument("--timeout", type=float, default=600, help="seconds per smtp-source run")
    g.add_argument(
        "--drain-timeout", type=float, default=300, help="seconds for deliveries to land after it"
    )
    g.add_argument("--warmup", type=int, default=None, help="warm-up messages (default N/10, ≤200)")
    g.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="runs of each server per case, taking turns (the table shows the median run)",
    )
    g.add_argument(
        "--idle-connections",
        type=int,
        default=1000,
        help="idle connections for the memory test (0 skips it)",
    )

    g = p.add_argument_group("pop3")
    g.add_argument(
        "--clients",
        type=_int_list,
        default=[10, 50],
        help="concurrent POP3 and IMAP clients, one user each (default 10,50)",
    )
    g.add_argument(
        "--pop3-sessions",
        type=int,
        default=None,
        help="timed POP3 sessions per run, shared by the clients (default 1000; --quick 200)",
    )
    g.add_argument(
        "--pop3-duration",
        type=float,
        default=None,
        help="no new session after this many seconds of a run (default 120; --quick 30)",
    )
    g.add_argument(
        "--dovecot-scheme",
        type=_schemes,
        default=["PLAIN"],
        help="Dovecot passdb scheme(s), one Dovecot row each: PLAIN (default: no hashing, "
        "the POP3 work alone), ARGON2ID (mailwright's own hash parameters), SHA512-CRYPT, …",
    )
    g.add_argument(
        "--dovecot-mode",
        type=_modes,
        default=None,
        help="Dovecot process model(s), one row each: default (a process per connection "
        "and per session, as installed) and/or performance (Dovecot's documented "
        "high-performance mode: long-lived login processes, reused pop3/imap processes); "
        "default: POP3 default, IMAP default,performance (the issue's two baselines)",
    )

    g = p.add_argument_group("imap (also --clients, --dovecot-scheme, --dovecot-mode)")
    g.add_argument(
        "--imap-workloads",
        type=_workloads,
        default=list(imap.WORKLOADS),
        help="sessions (connect, LOGIN, SELECT, a cycle, LOGOUT, again) and/or persistent "
        "(cycles on long-lived logged-in sessions)",
    )
    g.add_argument(
        "--imap-cycles",
        type=int,
        default=None,
        help="cycles (sessions workload: sessions) per timed run, shared by the clients "
        "(default 30000; --quick 3000)",
    )
    g.add_argument(
        "--imap-duration",
        type=float,
        default=None,
        help="no new cycle after this many seconds of a run (default 60; --quick 15)",
    )
    g.add_argument(
        "--imap-idle-sessions",
        type=int,
        default=1000,
        help="IMAP sessions in IDLE for the memory test (0 skips it)",
    )
    g.add_argument(
        "--imap-idle-users",
        type=int,
        default=50,
        help="users the idle sessions are spread over (default 50)",
    )
    g = p.add_argument_group("outbound (also --size, --timeout, --drain-timeout, --warmup)")
    g.add_argument(
        "--outbound-messages",
        type=int,
        default=None,
        help="messages per timed run (default 10000; --quick 1000)",
    )
    g.add_argument(
        "--outbound-sessions",
        type=int,
        default=10,
        help="concurrent submission sessions, each logging in once (default 10)",
    )
    g.add_argument(
        "--outbound-recipients",
        type=int,
        default=1,
        help="recipients at remote.test per message (default 1)",
    )
    g.add_argument(
        "--postfix-auth",
        choices=outbound.AUTH_MODES,
        default="dovecot",
        help="dovecot: Postfix requires AUTH, checked by a private Dovecot's auth service "
        "(default); none: Postfix relays for mynetworks and the generator skips AUTH",
    )
    g.add_argument(
        "--no-pipelining",
        action="store_true",
        help="send MAIL, RCPT and DATA one at a time (default: pipelined when offered)",
    )
    args = p.parse_args(argv)
    if args.outbound_messages is None:
        args.outbound_messages = 1000 if args.quick else 10000
    if args.outbound_messages < 1 or args.outbound_sessions < 1:
        p.error("--outbound-messages and --outbound-sessions must be ≥ 1")
    if not 1 <= args.outbound_recipients <= 100:
        p.error("--outbound-recipients between 1 and 100")
    args.outbound_warmup = (
        args.warmup if args.warmup is not None else min(200, args.outbound_messages // 10)
    )
    if args.messages is None:
        args.messages = 2000 if args.quick else 20000
    if args.messages < 1 or args.size < 1:
        p.error("--messages and --size must be ≥ 1")
    if max(args.recipients) > smtp.MAX_RECIPIENTS:
        p.error(f"--recipients at most {smtp.MAX_RECIPIENTS} (the users both servers know)")
    if args.warmup is None:
        args.warmup = min(200, args.messages // 10)
    if args.pop3_sessions is None:
        args.pop3_sessions = 200 if args.quick else 1000
    if args.pop3_duration is None:
        args.pop3_duration = 30.0 if args.quick else 120.0
    if args.pop3_sessions < 1 or args.pop3_duration <= 0:
        p.error("--pop3-sessions and --pop3-duration must be > 0")
    if max(args.clients) > pop3.MAX_CLIENTS:
        p.error(f"--clients at most {pop3.MAX_CLIENTS}")
    if args.imap_cycles is None:
        args.imap_cycles = 3000 if args.quick else 30000
    if args.imap_duration is None:
        args.imap_duration = 15.0 if args.quick else 60.0
    if args.imap_cycles < 1 or args.imap_duration <= 0:
        p.error("--imap-cycles and --imap-duration must be > 0")
    if not 0 <= args.imap_idle_sessions <= 20000 or args.imap_idle_users < 1:
        p.error("--imap-idle-sessions between 0 and 20000, --imap-idle-users ≥ 1")
    return args


def dovecot_modes(args: argparse.Namespace, protocol: str) -> list[str]:
    if args.dovecot_mode is not None:
        return list(args.dovecot_mode)
    return ["default", "performance"] if protocol == "imap" else ["default"]


def preflight_smtp(args: argparse.Namespace) -> list[str]:
    """The SMTP servers that can run here (dropping the others, saying why)."""
    servers = [s for s in args.only if s in SMTP_SERVERS]
    if not servers:
        return []
    for tool in (smtp.SMTP_SOURCE,):
        if not os.access(tool, os.X_OK):
            log(f"skipping SMTP: {tool} not found (apt-get install postfix ships smtp-source)")
            return []
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
    if "mailwright" in servers and not _mailwright_works(args.mailwright):
        log(f"skipping mailwright: `{args.mailwright} --help` does not work")
        servers.remove("mailwright")
    return servers


def _mailwright_works(binary: str) -> bool:
    try:
        proc = subprocess.run([binary, "--help"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def preflight_pop3(
    args: argparse.Namespace, workdir: str, protocol: str = "pop3"
) -> tuple[list[str], dict[str, str]]:
    """The POP3 (or IMAP) servers that can run here, and why the others cannot."""
    servers = [s for s in args.only if s in (POP3_SERVERS if protocol == "pop3" else IMAP_SERVERS)]
    skipped: dict[str, str] = {}
    if "dovecot" in servers:
        known = dovecot.schemes()
        missing = [x for x in args.dovecot_scheme if x not in known]
        if not os.access(DOVECOT, os.X_OK) or not os.access(DOVECOT_PROTOCOL[protocol], os.X_OK):
            skipped["dovecot"] = f"not installed (apt-get install dovecot-{protocol}d)"
        elif os.geteuid() != 0:
            skipped["dovecot"] = "a private Dovecot instance must be started as root"
        elif missing:
            skipped["dovecot"] = f"this Dovecot lacks the scheme(s) {missing} (doveadm pw -l)"
        elif dovecot.system_instance_running():
            log("warning: the system Dovecot is running and competes for CPU; stop it")
    if "mailwright" in servers and not _mailwright_works(args.mailwright):
        skipped["mailwright"] = f"`{args.mailwright} --help` does not work"
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
        servers.remove(name)
    return servers, skipped


def preflight_outbound(args: argparse.Namespace) -> tuple[list[str], dict[str, str], str]:
    """The outbound rows that can run here, why the others cannot, and Postfix's AUTH mode."""
    servers = [s for s in args.only if s in outbound.SERVERS]
    skipped: dict[str, str] = {}
    auth = args.postfix_auth
    if not os.access(SMTP_SINK, os.X_OK):
        return [], {"all": f"{SMTP_SINK} (the remote MX) not found: apt-get install postfix"}, auth
    for name in ("postfix", "postfix-dkim"):
        if name not in servers:
            continue
        if not os.access(POSTFIX, os.X_OK):
            skipped[name] = "not installed (apt-get install postfix)"
        elif os.geteuid() != 0:
            skipped[name] = "a private Postfix instance must be started as root"
        elif name == "postfix-dkim" and not os.access(outbound.OPENDKIM, os.X_OK):
            skipped[name] = "OpenDKIM not installed (apt-get install opendkim opendkim-tools)"
    postfix = {"postfix", "postfix-dkim"} & set(servers) - set(skipped)
    if postfix and auth == "dovecot" and not os.access(DOVECOT, os.X_OK):
        log("Postfix: no Dovecot for SASL (apt-get install dovecot-core); it relays without AUTH")
        auth = "none"
    if "mailwright" in servers:
        if not os.access(DNSMASQ, os.X_OK):
            skipped["mailwright"] = "dnsmasq (its DNS) not installed (apt-get install dnsmasq-base)"
        elif not _mailwright_works(args.mailwright):
            skipped["mailwright"] = f"`{args.mailwright} --help` does not work"
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
        servers.remove(name)
    return servers, skipped, auth


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
    order = [name for name in SMTP_SERVERS if name in servers]
    for i, case in enumerate(cases, 1):
        log(f"[{i}/{len(cases)}] {case.label}, {args.messages:,} messages")
        # Servers take turns within a case so slow drift (thermal, page cache, other
        # guests on the host) hits all; each round reverses the order of the one before.
        for round_ in range(1, args.rounds + 1):
            if args.rounds > 1:
                log(f"  round {round_}/{args.rounds}")
            for name in order if round_ % 2 else order[::-1]:
                run = smtp.run_case(name, factories[name], case, settings, log)
                run["round"] = round_
                runs.append(run)

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
            "rounds": args.rounds,
        },
        "filesystem": smtp.fs_type(workdir),
        "recipient_addresses": rcpts,
        "runs": runs,
        "idle": idle,
    }


def bench_pop3(args: argparse.Namespace, servers: list[str], workdir: str) -> dict[str, Any]:
    settings = pop3.Settings(
        sessions=args.pop3_sessions,
        duration=args.pop3_duration,
        grace=60.0,
        password=PASSWORD,
        corpus_dir=pop3.corpus_dir(workdir),
    )

    def dovecot_factory(scheme: str, mode: str, clients: int) -> Callable[[], DovecotInstance]:
        return lambda: DovecotInstance(
            pop3.users(clients),
            PASSWORD,
            scheme,
            performance=mode == "performance",
            workdir=workdir,
        )

    def mailwright_factory(clients: int) -> Callable[[], MailwrightInstance]:
        return lambda: MailwrightInstance(
            args.mailwright, pop3.users(clients), workdir=workdir, pop3=True
        )

    runs = []
    for i, clients in enumerate(args.clients, 1):
        log(f"[{i}/{len(args.clients)}] {clients} POP3 clients, {args.pop3_sessions:,} sessions")
        # Servers take turns within a case so slow drift (thermal, page cache) hits all.
        if "dovecot" in servers:
            for mode in dovecot_modes(args, "pop3"):
                for scheme in args.dovecot_scheme:
                    label = dovecot.label(scheme, mode == "performance")
                    factory = dovecot_factory(scheme, mode, clients)
                    runs.append(pop3.run_case("dovecot", label, factory, clients, settings, log))
        if "mailwright" in servers:
            factory = mailwright_factory(clients)
            runs.append(pop3.run_case("mailwright", "mailwright", factory, clients, settings, log))
    sizes = [len(m) for m in corpus.messages()]
    mw_params = next(
        (r["describe"]["password_params"] for r in runs if r["server"] == "mailwright"
         and "describe" in r),
        None,
    )  # fmt: skip
    return {
        "settings": {
            "clients": args.clients,
            "sessions": args.pop3_sessions,
            "duration": args.pop3_duration,
            "messages_per_mailbox": len(sizes),
            "message_size": round(sum(sizes) / len(sizes)),
            "servers": servers,
            "dovecot_schemes": args.dovecot_scheme if "dovecot" in servers else [],
            "dovecot_modes": dovecot_modes(args, "pop3") if "dovecot" in servers else [],
        },
        "password": [
            {"scheme": x, "params": dovecot.scheme_params(dovecot.password_hash(x, PASSWORD))}
            for x in (args.dovecot_scheme if "dovecot" in servers else [])
        ],
        "mailwright_password": mw_params,
        "filesystem": smtp.fs_type(workdir),
        "runs": runs,
    }


def bench_imap(args: argparse.Namespace, servers: list[str], workdir: str) -> dict[str, Any]:
    settings = imap.Settings(
        cycles=args.imap_cycles,
        duration=args.imap_duration,
        grace=60.0,
        password=PASSWORD,
        corpus_dir=imap.corpus_dir(workdir),
        workloads=tuple(args.imap_workloads),
    )
    modes = dovecot_modes(args, "imap")

    def dovecot_factory(
        scheme: str, mode: str, names: list[str], max_sessions: int = 0
    ) -> Callable[[], DovecotInstance]:
        return lambda: DovecotInstance(
            names,
            PASSWORD,
            scheme,
            performance=mode == "performance",
            workdir=workdir,
            protocols=("imap",),
            max_sessions=max_sessions,
        )

    def mailwright_factory(
        names: list[str], max_connections: int = 5000
    ) -> Callable[[], MailwrightInstance]:
        return lambda: MailwrightInstance(
            args.mailwright, names, workdir=workdir, imap=True, max_connections=max_connections
        )

    runs: list[dict[str, Any]] = []
    for i, clients in enumerate(args.clients, 1):
        log(
            f"[{i}/{len(args.clients)}] {clients} IMAP clients, "
            f"{', '.join(settings.workloads)}: up to {args.imap_cycles:,} cycles / "
            f"{args.imap_duration:.0f}s per run"
        )
        names = imap.users(clients)
        # Servers take turns within a case so slow drift (thermal, page cache) hits all.
        if "dovecot" in servers:
            for mode in modes:
                for scheme in args.dovecot_scheme:
                    label = dovecot.label(scheme, mode == "performance")
                    dc = dovecot_factory(scheme, mode, names)
                    runs += imap.run_case("dovecot", label, dc, clients, settings, log)
        if "mailwright" in servers:
            mw = mailwright_factory(names)
            runs += imap.run_case("mailwright", "mailwright", mw, clients, settings, log)

    idle: list[dict[str, Any]] = []
    n = args.imap_idle_sessions
    if n > 0:
        log(f"idle: {n:,} IMAP sessions in IDLE over {args.imap_idle_users} users")
        smtp.raise_fd_limit(n * 2 + 1024)  # the load client and the servers inherit it
        names = imap.users(args.imap_idle_users)
        cases: list[tuple[str, str, Callable[[], Any]]] = []
        if "dovecot" in servers:
            for mode in modes:
                scheme = args.dovecot_scheme[0]
                label = dovecot.label(scheme, mode == "performance")
                cases.append(("dovecot", label, dovecot_factory(scheme, mode, names, n)))
        if "mailwright" in servers:
            cases.append(("mailwright", "mailwright", mailwright_factory(names, n * 2 + 100)))
        for name, label, factory in cases:
            t = time.monotonic()
            try:
                with factory() as server:
                    log(f"  {label} on 127.0.0.1:{server.imap_port} ...")
                    r = imap.idle_sessions(server, names, n, settings)
            except Exception as e:  # keep the throughput results whatever happens here
                r = {"server": name, "label": label, "sessions": n, "error": repr(e)}
            idle.append(r)
            log(
                f"    {label}: "
                + (
                    f"{r.get('idling', 0):,} idling, extra RSS {r['extra_rss_mb']} MB, "
                    f"PSS {r['extra_pss_mb']} MB, processes {r['processes_after']}"
                    if "extra_rss_mb" in r
                    else ""
                )
                + (f" FAILED: {r['error']}" if "error" in r else "")
                + f" ({time.monotonic() - t:.0f}s)"
            )

    sizes = [len(m) for m in corpus.messages()]
    mw_params = next(
        (r["describe"]["password_params"] for r in runs if r["server"] == "mailwright"
         and "describe" in r),
        None,
    )  # fmt: skip
    return {
        "settings": {
            "clients": args.clients,
            "workloads": list(settings.workloads),
            "cycles": args.imap_cycles,
            "duration": args.imap_duration,
            "messages_per_mailbox": len(sizes),
            "message_size": round(sum(sizes) / len(sizes)),
            "servers": servers,
            "dovecot_schemes": args.dovecot_scheme if "dovecot" in servers else [],
            "dovecot_modes": modes if "dovecot" in servers else [],
            "idle_sessions": n,
            "idle_users": args.imap_idle_users,
        },
        "password": [
            {"scheme": x, "params": dovecot.scheme_params(dovecot.password_hash(x, PASSWORD))}
            for x in (args.dovecot_scheme if "dovecot" in servers else [])
        ],
        "mailwright_password": mw_params,
        "filesystem": smtp.fs_type(workdir),
        "runs": runs,
        "idle": idle,
    }


def bench_outbound(
    args: argparse.Namespace, servers: list[str], workdir: str, auth: str
) -> dict[str, Any]:
    corpus_path = outbound.corpus_dir(workdir, args.size)
    sizes = [p.stat().st_size for p in sorted(corpus_path.glob("*.eml"))]
    settings = outbound.Settings(
        messages=args.outbound_messages,
        sessions=args.outbound_sessions,
        recipients=args.outbound_recipients,
        warmup=args.outbound_warmup,
        timeout=args.timeout,
        drain_timeout=args.drain_timeout,
        password=PASSWORD,
        corpus_dir=corpus_path,
        pipelining=not args.no_pipelining,
    )
    runs: list[dict[str, Any]] = []
    dns_info: dict[str, object] = {}
    log(
        f"outbound: {args.outbound_messages:,} messages, {args.outbound_sessions} sessions, "
        f"{args.outbound_recipients} recipient(s) at {outbound.REMOTE_DOMAIN} each"
    )
    with contextlib.ExitStack() as stack:
        # One remote MX (and one DNS) for the whole run: every server delivers to it.
        sink = stack.enter_context(outbound.sink_for_run(workdir))
        log(f"  remote MX: smtp-sink on 127.0.0.1:{sink.port}")
        dns_port = 0
        if "mailwright" in servers:
            dns = stack.enter_context(
                DnsmasqInstance(
                    mx={outbound.REMOTE_DOMAIN: [(10, outbound.MX_HOST)]},
                    a={outbound.MX_HOST: "127.0.0.1"},
                    workdir=workdir,
                )
            )
            dns_port = dns.port
            dns_info = dns.describe()
            log(f"  DNS: dnsmasq on 127.0.0.1:{dns.port}")
        factories: dict[str, Callable[[], outbound.OutboundServer]] = {
            "sink": lambda: outbound.direct(sink),
            "postfix": lambda: outbound.PostfixRelay(sink.port, auth, PASSWORD, workdir=workdir),
            "postfix-dkim": lambda: outbound.PostfixRelay(
                sink.port, auth, PASSWORD, workdir=workdir, dkim=True
            ),
            "mailwright": lambda: outbound.MailwrightOutbound(
                args.mailwright, dns_port, sink.port, workdir=workdir
            ),
        }
        for name in outbound.SERVERS:
            if name in servers:
                row = "smtp-sink" if name == "sink" else name
                runs.append(outbound.run_case(row, factories[name], sink, settings, log))
        sink_info = sink.describe()
        sink_received = sink.received()
    return {
        "settings": {
            "messages": args.outbound_messages,
            "sessions": args.outbound_sessions,
            "recipients": args.outbound_recipients,
            "message_size": round(sum(sizes) / len(sizes)),
            "warmup": args.outbound_warmup,
            "pipelining": not args.no_pipelining,
            "postfix_auth": auth,
            "servers": servers,
        },
        "sink": {**sink_info, "options": list(outbound.SINK_OPTIONS), "received": sink_received},
        "dns": dns_info,
        "filesystem": smtp.fs_type(workdir),
        "runs": runs,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    command = ".venv/bin/python bench/run.py " + shlex.join(argv)
    workdir = tempfile.mkdtemp(prefix="mwbench-", dir=args.workdir)
    # Postfix's and Dovecot's unprivileged processes must reach their directories.
    os.chmod(workdir, 0o755)
    out_dir = Path(args.results_dir)
    ran = failed = 0
    try:
        for protocol in protocols:
            doc: dict[str, Any] = {"command": command, "machine": machine.describe(REPO)}
            doc["mailwright_version"] = _version([args.mailwright, "--version"]).replace(
                "mailwright ", ""
            )
            started = time.monotonic()
            if protocol == "smtp":
                servers = preflight_smtp(args)
                if not servers:
                    log("smtp: nothing to run")
                    continue
                doc["postfix_version"] = _version(["/usr/sbin/postconf", "-h", "mail_version"])
                doc["smtp"] = bench_smtp(args, servers, workdir)
            elif protocol == "outbound":
                servers, skipped, auth = preflight_outbound(args)
                if not servers:
                    log("outbound: nothing to run")
                    continue
                doc["postfix_version"] = _version(["/usr/sbin/postconf", "-h", "mail_version"])
                doc["outbound"] = bench_outbound(args, servers, workdir, auth)
                doc["outbound"]["skipped"] = skipped
            else:
                servers, skipped = preflight_pop3(args, workdir, protocol)
                if not servers:
                    log(f"{protocol}: nothing to run")
                    continue
                doc["dovecot_version"] = dovecot.version()
                bench = bench_pop3 if protocol == "pop3" else bench_imap
                doc[protocol] = bench(args, servers, workdir)
                doc[protocol]["skipped"] = skipped
            doc["wall_seconds"] = round(time.monotonic() - started, 1)
            out_dir.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            out = out_dir / f"{protocol}-{stamp}.json"
            out.write_text(json.dumps(doc, indent=2) + "\n")
            print(report.markdown(doc), flush=True)
            log(f"results: {out} ({doc['wall_seconds']:.0f}s)")
            ran += 1
            failed += sum(1 for r in doc[protocol]["runs"] if "error" in r)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not ran:
        log("nothing to run")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
