"""Markdown tables from the JSON results (pasteable into the README)."""

from __future__ import annotations

from typing import Any

from harness import machine

ORDER = {"smtp-sink": 0, "postfix": 1, "postfix-dkim": 1.5, "dovecot": 1, "mailwright": 2}
LABEL = {
    "smtp-sink": "smtp-sink (protocol ceiling)",
    "postfix": "Postfix",
    "postfix-dkim": "Postfix + OpenDKIM",
    "dovecot": "Dovecot",
    "mailwright": "mailwright",
}


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def _short(text: str, limit: int = 100) -> str:
    one = " ".join(str(text).split()).replace("|", "/")
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "—"
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median end-to-end rate (of an even number, the lower middle);
    a failed run, if any failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    ranked = sorted(runs, key=lambda r: r["e2e_per_s"])
    return ranked[(len(ranked) - 1) // 2]


def _spread(values: list[float], digits: int = 0, suffix: str = "") -> str:
    """The range of several rounds' values, as " (min-max)"; nothing for one."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    return f" ({low:,.{digits}f}{suffix}-{high:,.{digits}f}{suffix})"


def smtp_table(results: list[dict[str, Any]]) -> str:
    """One row per server and case. With several rounds a row is the run with the median
    end-to-end rate, that rate followed by the range of every round's; the ratio row
    divides the medians, followed by the range of the ratios within each round."""
    rows = [
        "| case | server | accepted msg/s | end-to-end msg/s | CPU s / 1k msg | peak RSS MB (sum) | peak PSS MB |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    cases = sorted({(r["sessions"], r["recipients"]) for r in results})
    for sessions, rcpts in cases:
        label = f"{sessions} sess x {rcpts} rcpt"
        group = [r for r in results if (r["sessions"], r["recipients"]) == (sessions, rcpts)]
        servers = sorted({r["server"] for r in group}, key=lambda s: ORDER.get(s, 9))
        rounds = {s: [r for r in group if r["server"] == s] for s in servers}
        by = {s: _median_run(rounds[s]) for s in servers}
        for server in servers:
            r = by[server]
            name = LABEL.get(server, server)
            if "error" in r:
                rows.append(f"| {label} | {name} | failed: {_short(r['error'])} | | | | |")
            else:
                spread = _spread([x["e2e_per_s"] for x in rounds[server]])
                rows.append(
                    f"| {label} | {name} | {_num(r.get('accepted_per_s'))} | "
                    f"{_num(r.get('e2e_per_s'))}{spread} | {_num(r.get('cpu_per_1k'), 2)} | "
                    f"{_num(r.get('peak_rss_mb'))} | {_num(r.get('peak_pss_mb'))} |"
                )
            label = ""
        mw, pf = by.get("mailwright"), by.get("postfix")
        if mw and pf and "error" not in mw and "error" not in pf:
            pairs = {
                r.get("round"): r["e2e_per_s"] for r in rounds["mailwright"] if "error" not in r
            }
            within = [
                pairs[r.get("round")] / r["e2e_per_s"]
                for r in rounds["postfix"]
                if "error" not in r and r.get("round") in pairs and r["e2e_per_s"]
            ]
            rows.append(
                f"| | **mailwright / Postfix** | {_ratio(mw['accepted_per_s'], pf['accepted_per_s'])} | "
                f"{_ratio(mw['e2e_per_s'], pf['e2e_per_s'])}{_spread(within, 2, 'x')} | "
                f"{_ratio(mw['cpu_per_1k'], pf['cpu_per_1k'])} | "
                f"{_ratio(mw['peak_rss_mb'], pf['peak_rss_mb'])} | "
                f"{_ratio(mw['peak_pss_mb'], pf['peak_pss_mb'])} |"
            )
    return "\n".join(rows)


def idle_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    n = results[0]["connections"]
    rows = [
        f"| {n:,} idle SMTP connections | greeted | RSS before MB | extra RSS MB | extra RSS KB / conn | extra PSS MB | processes |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    by = {}
    for r in sorted(results, key=lambda r: ORDER.get(r["server"], 9)):
        by[r["server"]] = r
        name = LABEL.get(r["server"], r["server"])
        if "rss_before_mb" not in r:
            rows.append(f"| {name} | failed: {_short(r.get('error', '?'))} | | | | | |")
            continue
        rows.append(
            f"| {name} | {r['greeted']:,} | {_num(r['rss_before_mb'])} | "
            f"{_num(r['extra_rss_mb'])} | {_num(r['extra_rss_kb_per_conn'], 1)} | "
            f"{_num(r['extra_pss_mb'])} | {r['processes_after']} |"
        )
    mw, pf = by.get("mailwright"), by.get("postfix")
    if mw and pf and "extra_rss_mb" in mw and "extra_rss_mb" in pf:
        rows.append(
            f"| **mailwright / Postfix** | | | {_ratio(mw['extra_rss_mb'], pf['extra_rss_mb'])} | "
            f"{_ratio(mw['extra_rss_kb_per_conn'], pf['extra_rss_kb_per_conn'])} | "
            f"{_ratio(mw['extra_pss_mb'], pf['extra_pss_mb'])} | |"
        )
    return "\n".join(rows)


def pop3_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| clients | server | sessions/s | msg/s | MB/s | CPU s / 1k msg | client CPU s / 1k msg "
        "| login ms (median) | peak RSS MB (sum) | peak PSS MB |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for clients in sorted({r["clients"] for r in results}):
        group = sorted(
            (r for r in results if r["clients"] == clients),
            key=lambda r: ORDER.get(r["server"], 9),
        )
        label = str(clients)
        for r in group:
            name = r.get("label") or LABEL.get(r["server"], r["server"])
            if "messages_per_s" not in r:
                rows.append(f"| {label} | {name} | failed: {_short(r['error'])} | | | | | | | |")
            else:
                note = f" (failed: {_short(r['error'], 60)})" if "error" in r else ""
                if r.get("stopped_by") == "duration":
                    note += f" ({r['sessions']:,} sessions: the time bound)"
                rows.append(
                    f"| {label} | {name}{note} | {_num(r['sessions_per_s'], 1)} | "
                    f"{_num(r['messages_per_s'])} | {_num(r['mb_per_s'], 1)} | "
                    f"{_num(r['cpu_per_1k'], 2)} | {_num(r['client_cpu_per_1k'], 2)} | "
                    f"{_num(r['login_ms_median'], 1)} | {_num(r['peak_rss_mb'])} | "
                    f"{_num(r['peak_pss_mb'])} |"
                )
            label = ""
        mw = next((r for r in group if r["server"] == "mailwright" and "error" not in r), None)
        for dc in group:
            if mw is None or dc["server"] != "dovecot" or "error" in dc:
                continue
            rows.append(
                f"| | **mailwright / {dc.get('label', 'Dovecot')}** | "
                f"{_ratio(mw['sessions_per_s'], dc['sessions_per_s'])} | "
                f"{_ratio(mw['messages_per_s'], dc['messages_per_s'])} | "
                f"{_ratio(mw['mb_per_s'], dc['mb_per_s'])} | "
                f"{_ratio(mw['cpu_per_1k'], dc['cpu_per_1k'])} | | "
                f"{_ratio(mw['login_ms_median'], dc['login_ms_median'])} | "
                f"{_ratio(mw['peak_rss_mb'], dc['peak_rss_mb'])} | "
                f"{_ratio(mw['peak_pss_mb'], dc['peak_pss_mb'])} |"
            )
    return "\n".join(rows)


# -- IMAP ----------------------------------------------------------------------------
IMAP_OPS = {
    "login": "LOGIN",
    "select": "SELECT INBOX",
    "fetch_flags": "FETCH 1:* (FLAGS UID)",
    "fetch_header": "UID FETCH (BODY.PEEK[HEADER])",
    "fetch_body": "UID FETCH (BODY.PEEK[])",
    "store": "UID STORE +FLAGS",
    "append": "APPEND",
    "delete": "UID STORE \\Deleted",
    "expunge": "UID EXPUNGE",
    "noop": "NOOP",
    "logout": "LOGOUT",
}
WORKLOAD_ORDER = {"sessions": 0, "persistent": 1}


def _imap_cases(results: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return sorted(
        {(r["clients"], r["workload"]) for r in results},
        key=lambda c: (c[0], WORKLOAD_ORDER.get(c[1], 9)),
    )


def _imap_group(results: list[dict[str, Any]], case: tuple[int, str]) -> list[dict[str, Any]]:
    return sorted(
        (r for r in results if (r["clients"], r["workload"]) == case),
        key=lambda r: (ORDER.get(r["server"], 9), "performance" in r.get("label", "")),
    )


def imap_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| clients | workload | server | ops/s | p50 ms | p99 ms | CPU s / 1k ops "
        "| client CPU s / 1k ops | peak RSS MB (sum) | peak PSS MB |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in _imap_cases(results):
        group = _imap_group(results, case)
        clients, workload = str(case[0]), case[1]
        for r in group:
            name = r.get("label") or LABEL.get(r["server"], r["server"])
            if "ops_per_s" not in r:
                rows.append(
                    f"| {clients} | {workload} | {name} | failed: {_short(r['error'])} "
                    "| | | | | | |"
                )
            else:
                note = f" (failed: {_short(r['error'], 60)})" if "error" in r else ""
                if r.get("stopped_by") == "duration":
                    note += f" ({r['cycles']:,} cycles: the time bound)"
                rows.append(
                    f"| {clients} | {workload} | {name}{note} | {_num(r['ops_per_s'])} | "
                    f"{_num(r['p50_ms'], 2)} | {_num(r['p99_ms'], 1)} | "
                    f"{_num(r['cpu_per_1k'], 2)} | {_num(r['client_cpu_per_1k'], 2)} | "
                    f"{_num(r['peak_rss_mb'])} | {_num(r['peak_pss_mb'])} |"
                )
            clients = workload = ""
        mw = next((r for r in group if r["server"] == "mailwright" and "error" not in r), None)
        for dc in group:
            if mw is None or dc["server"] != "dovecot" or "error" in dc:
                continue
            rows.append(
                f"| | | **mailwright / {dc.get('label', 'Dovecot')}** | "
                f"{_ratio(mw['ops_per_s'], dc['ops_per_s'])} | "
                f"{_ratio(mw['p50_ms'], dc['p50_ms'])} | "
                f"{_ratio(mw['p99_ms'], dc['p99_ms'])} | "
                f"{_ratio(mw['cpu_per_1k'], dc['cpu_per_1k'])} | | "
                f"{_ratio(mw['peak_rss_mb'], dc['peak_rss_mb'])} | "
                f"{_ratio(mw['peak_pss_mb'], dc['peak_pss_mb'])} |"
            )
    return "\n".join(rows)


def imap_commands_table(results: list[dict[str, Any]]) -> str:
    """ops/s and p50 / p99 ms of each command, one column pair per server."""
    labels: list[str] = []
    for r in sorted(
        results, key=lambda r: (ORDER.get(r["server"], 9), "performance" in r.get("label", ""))
    ):
        label = r.get("label") or r["server"]
        if label not in labels:
            labels.append(label)
    head = "| clients | workload | command | " + " | ".join(
        f"{label} ops/s | p50 / p99 ms" for label in labels
    )
    rows = [head + " |", "|--:|---|---|" + "--:|--:|" * len(labels)]
    for case in _imap_cases(results):
        by = {r.get("label") or r["server"]: r for r in _imap_group(results, case)}
        present = [op for op in IMAP_OPS if any(op in r.get("by_command", {}) for r in by.values())]
        clients, workload = str(case[0]), case[1]
        for op in present:
            cells = []
            for label in labels:
                c = by.get(label, {}).get("by_command", {}).get(op)
                if c is None:
                    cells.append("— | —")
                else:
                    cells.append(
                        f"{_num(c['ops_per_s'])} | {_num(c['p50_ms'], 2)} / {_num(c['p99_ms'], 1)}"
                    )
            rows.append(f"| {clients} | {workload} | {IMAP_OPS[op]} | " + " | ".join(cells) + " |")
            clients = workload = ""
    return "\n".join(rows)


def imap_idle_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    n = results[0]["sessions"]
    rows = [
        f"| {n:,} IMAP sessions in IDLE | idling | RSS before MB | extra RSS MB "
        "| extra RSS KB / session | PSS before MB | extra PSS MB | processes |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ordered = sorted(
        results, key=lambda r: (ORDER.get(r["server"], 9), "performance" in r.get("label", ""))
    )
    for r in ordered:
        name = r.get("label") or LABEL.get(r["server"], r["server"])
        if "rss_before_mb" not in r:
            rows.append(f"| {name} | failed: {_short(r.get('error', '?'))} | | | | | | |")
            continue
        note = f" (failed: {_short(r['error'], 60)})" if "error" in r else ""
        rows.append(
            f"| {name}{note} | {r.get('idling', 0):,} | {_num(r['rss_before_mb'])} | "
            f"{_num(r['extra_rss_mb'])} | {_num(r['extra_rss_kb_per_session'], 1)} | "
            f"{_num(r['pss_before_mb'])} | {_num(r['extra_pss_mb'])} | "
            f"{r['processes_before']} → {r['processes_after']} |"
        )
    mw = next((r for r in ordered if r["server"] == "mailwright" and "extra_rss_mb" in r), None)
    for dc in ordered:
        if mw is None or dc["server"] != "dovecot" or "extra_rss_mb" not in dc:
            continue
        rows.append(
            f"| **mailwright / {dc.get('label', 'Dovecot')}** | | | "
            f"{_ratio(mw['extra_rss_mb'], dc['extra_rss_mb'])} | "
            f"{_ratio(mw['extra_rss_kb_per_session'], dc['extra_rss_kb_per_session'])} | | "
            f"{_ratio(mw['extra_pss_mb'], dc['extra_pss_mb'])} | |"
        )
    return "\n".join(rows)


def imap_goals(section: dict[str, Any]) -> list[str]:
    """Issue 3's targets, each with what this run measured."""
    runs = section.get("runs", [])

    def ratios(workload: str, performance: bool) -> str:
        out = []
        for clients in sorted({r["clients"] for r in runs}):
            group = [r for r in runs if (r["clients"], r["workload"]) == (clients, workload)]
            mw = next((r for r in group if r["server"] == "mailwright" and "error" not in r), None)
            dc = next(
                (
                    r
                    for r in group
                    if r["server"] == "dovecot"
                    and "error" not in r
                    and ("performance" in r.get("label", "")) == performance
                ),
                None,
            )
            if mw and dc:
                out.append(f"{clients} clients {_ratio(mw['ops_per_s'], dc['ops_per_s'])}")
        return ", ".join(out) or "not measured"

    idle = next(
        (r for r in section.get("idle", []) if r["server"] == "mailwright" and "extra_rss_mb" in r),
        None,
    )
    return [
        "Targets (issue 3): "
        f"sessions ≥ 1.0x Dovecot as shipped: {ratios('sessions', False)}; "
        f"persistent ≥ 0.5x Dovecot in performance mode: {ratios('persistent', True)}; "
        f"{idle['sessions'] if idle else 1000:,} sessions in IDLE < 100 MB extra RSS: "
        + (f"{idle['extra_rss_mb']:,.0f} MB" if idle else "not measured")
        + ".",
    ]


# -- outbound ------------------------------------------------------------------------
def outbound_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| server | submitted msg/s | end-to-end msg/s | CPU s / 1k msg | client CPU s / 1k msg "
        "| peak RSS MB (sum) | peak PSS MB |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    ordered = sorted(results, key=lambda r: ORDER.get(r["server"], 9))
    by = {}
    for r in ordered:
        by[r["server"]] = r
        name = r.get("label") or LABEL.get(r["server"], r["server"])
        if r["server"] in ("postfix", "postfix-dkim") and r.get("auth"):
            name += " (+ Dovecot auth)"
        if "submitted_per_s" not in r:
            rows.append(f"| {name} | failed: {_short(r['error'])} | | | | | |")
            continue
        note = f" (failed: {_short(r['error'], 60)})" if "error" in r else ""
        rows.append(
            f"| {name}{note} | {_num(r['submitted_per_s'])} | {_num(r['e2e_per_s'])} | "
            f"{_num(r['cpu_per_1k'], 2)} | {_num(r['client_cpu_per_1k'], 2)} | "
            f"{_num(r['peak_rss_mb'])} | {_num(r['peak_pss_mb'])} |"
        )
    mw = by.get("mailwright")
    for key, versus in (("postfix", "Postfix"), ("postfix-dkim", "Postfix + OpenDKIM")):
        pf = by.get(key)
        if mw and pf and "error" not in mw and "error" not in pf:
            rows.append(
                f"| **mailwright / {versus}** | "
                f"{_ratio(mw['submitted_per_s'], pf['submitted_per_s'])} | "
                f"{_ratio(mw['e2e_per_s'], pf['e2e_per_s'])} | "
                f"{_ratio(mw['cpu_per_1k'], pf['cpu_per_1k'])} | | "
                f"{_ratio(mw['peak_rss_mb'], pf['peak_rss_mb'])} | "
                f"{_ratio(mw['peak_pss_mb'], pf['peak_pss_mb'])} |"
            )
    return "\n".join(rows)


def outbound_notes(section: dict[str, Any]) -> list[str]:
    st = section["settings"]
    runs = section.get("runs", [])
    mw = next((r for r in runs if r["server"] == "mailwright" and "error" not in r), None)
    pf = next((r for r in runs if r["server"] == "postfix" and "error" not in r), None)
    auth = st.get("postfix_auth", "?")
    lines = [
        f"Outbound: {st['messages']:,} messages of ~{st['message_size']:,} bytes over "
        f"{st['sessions']} sessions (each: AUTH PLAIN once — not against the sink, which "
        "offers no AUTH — then MAIL/RCPT/DATA, RSET between"
        + (", pipelined" if st.get("pipelining") else "")
        + f"), {st['recipients']} recipient(s) at remote.test each; the remote MX is "
        "smtp-sink on 127.0.0.1 (no TLS, so no TLS on either side). mailwright: MX through "
        "dnsmasq, DKIM signing on (its default), queue concurrency as shipped "
        "(`[queue] max_per_destination`). Postfix: "
        "`transport_maps` route to the sink (its resolver is the system's), "
        + (
            "AUTH through Dovecot SASL (`{PLAIN}` password), sender login map"
            if auth == "dovecot"
            else "**no AUTH** (relays for mynetworks; the generator skips AUTH for it)"
        )
        + ", no DKIM signing (stock Postfix has none), concurrency as shipped; "
        "Postfix + OpenDKIM: the same, signing through Debian's OpenDKIM as a milter "
        "(relaxed/relaxed, RSA-SHA256, a 2048-bit key; mailwright signs with RSA-SHA256 and "
        "Ed25519-SHA256). "
        f"Data on {section.get('filesystem', '?')} with each server's default fsync.",
    ]
    for name, why in section.get("skipped", {}).items():
        lines += ["", f"{name}: skipped ({_short(why, 300)})"]
    if mw and pf:
        ratio = mw["e2e_per_s"] / pf["e2e_per_s"] if pf["e2e_per_s"] else 0
        lines += [
            "",
            f"Target (issue): end-to-end ≥ 1.0x Postfix's: {ratio:.2f}x — "
            + ("met." if ratio >= 1.0 else "not met."),
        ]
    signing = next((r for r in runs if r["server"] == "postfix-dkim" and "error" not in r), None)
    if mw and signing and signing["e2e_per_s"]:
        lines += [
            "",
            "Doing the same work (both signing): end-to-end "
            f"{mw['e2e_per_s'] / signing['e2e_per_s']:.2f}x Postfix + OpenDKIM's.",
        ]
    return lines


def _peers(doc: dict[str, Any]) -> str:
    peers = []
    if "smtp" in doc or "outbound" in doc:
        peers.append(f"Postfix {doc.get('postfix_version', '?')}")
    if "pop3" in doc or "imap" in doc:
        peers.append(f"Dovecot {doc.get('dovecot_version', '?')}")
    return " and ".join(peers) or "?"


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    s = doc.get("smtp", {})
    p = doc.get("pop3", {})
    parts = [
        f"**{m['date']}** · {machine.one_line(m)} · mailwright {doc.get('mailwright_version', '?')}"
        f" (commit {m['commit']}) vs {_peers(doc)}",
        "",
        f"Command: `{doc['command']}`",
        "",
    ]
    if s:
        st = s["settings"]
        parts += [
            f"SMTP: smtp-source, {st['messages']:,} messages of {st['size']:,} bytes per run, "
            + (
                "several messages per connection (-d)"
                if st["reuse"]
                else "one connection per message"
            )
            + f"; data on {s.get('filesystem', '?')} with each server's default fsync"
            + (
                f"; {st['rounds']} rounds, the servers taking turns: each row is the run"
                " with the median end-to-end rate, (min-max) the range of the rounds."
                if st.get("rounds", 1) > 1
                else "."
            ),
            "",
            smtp_table(s["runs"]),
            "",
        ]
        if s.get("idle"):
            parts += [idle_table(s["idle"]), ""]
    if p:
        st = p["settings"]
        hashes = [f"Dovecot {x['scheme']} `{x['params']}`" for x in p.get("password", [])]
        if p.get("mailwright_password"):
            hashes.append(f"mailwright `{p['mailwright_password']}`")
        parts += [
            f"POP3: N concurrent clients, one user each; a session is USER/PASS, STAT, LIST, "
            f"UIDL, RETR of all {st['messages_per_mailbox']} messages "
            f"(~{st['message_size'] / 1000:.0f} KB each), QUIT; {st['sessions']:,} timed "
            f"sessions per run (at most {st['duration']:.0f}s). "
            + (f"Password hashes: {'; '.join(hashes)}. " if hashes else "")
            + f"Data on {p.get('filesystem', '?')}.",
            "",
            pop3_table(p["runs"]),
            "",
        ]
        for name, why in p.get("skipped", {}).items():
            parts += [f"{name}: skipped ({_short(why, 300)})", ""]
    i = doc.get("imap", {})
    if i:
        st = i["settings"]
        hashes = [f"Dovecot {x['scheme']} `{x['params']}`" for x in i.get("password", [])]
        if i.get("mailwright_password"):
            hashes.append(f"mailwright `{i['mailwright_password']}`")
        parts += [
            f"IMAP: N concurrent clients, one user each, INBOX of {st['messages_per_mailbox']} "
            f"messages (~{st['message_size'] / 1000:.0f} KB each). A cycle: `FETCH 1:* (FLAGS "
            "UID)`, `UID FETCH` of a header and of a whole message (`BODY.PEEK[HEADER]`, "
            "`BODY.PEEK[]`), `UID STORE +FLAGS`, `APPEND` of a corpus message, `UID STORE "
            "+FLAGS.SILENT (\\Deleted)` and `UID EXPUNGE` of the oldest message. *sessions*: "
            "connect, LOGIN, SELECT, a cycle, LOGOUT, again; *persistent*: cycles plus NOOP on "
            f"one logged-in session per client. Up to {st['cycles']:,} cycles per run, at most "
            f"{st['duration']:.0f}s. "
            + (f"Password hashes: {'; '.join(hashes)}. " if hashes else "")
            + f"Data on {i.get('filesystem', '?')}.",
            "",
            imap_table(i["runs"]),
            "",
            "By command:",
            "",
            imap_commands_table(i["runs"]),
            "",
        ]
        if i.get("idle"):
            idle = i["idle"]
            parts += [
                f"Idle: {idle[0]['sessions']:,} sessions over "
                f"{st.get('idle_users', '?')} users, each LOGIN, SELECT INBOX, IDLE; memory of "
                "the server's process tree before (after a warm-up round) and 1 s after the "
                "last one idles.",
                "",
                imap_idle_table(idle),
                "",
            ]
        parts += [*imap_goals(i), ""]
        for name, why in i.get("skipped", {}).items():
            parts += [f"{name}: skipped ({_short(why, 300)})", ""]
    o = doc.get("outbound", {})
    if o:
        notes = outbound_notes(o)
        parts += [notes[0], "", outbound_table(o["runs"]), "", *notes[2:], ""]
    return "\n".join(parts)
