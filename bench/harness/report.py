"""Markdown tables from the JSON results (pasteable into the README)."""

from __future__ import annotations

from typing import Any

from harness import machine

ORDER = {"smtp-sink": 0, "postfix": 1, "mailwright": 2}
LABEL = {
    "smtp-sink": "smtp-sink (protocol ceiling)",
    "postfix": "Postfix",
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


def smtp_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| case | server | accepted msg/s | end-to-end msg/s | CPU s / 1k msg | peak RSS MB (sum) | peak PSS MB |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    cases = sorted({(r["sessions"], r["recipients"]) for r in results})
    for sessions, rcpts in cases:
        label = f"{sessions} sess x {rcpts} rcpt"
        group = sorted(
            (r for r in results if (r["sessions"], r["recipients"]) == (sessions, rcpts)),
            key=lambda r: ORDER.get(r["server"], 9),
        )
        by = {r["server"]: r for r in group}
        for r in group:
            name = LABEL.get(r["server"], r["server"])
            if "error" in r:
                rows.append(f"| {label} | {name} | failed: {_short(r['error'])} | | | | |")
            else:
                rows.append(
                    f"| {label} | {name} | {_num(r.get('accepted_per_s'))} | "
                    f"{_num(r.get('e2e_per_s'))} | {_num(r.get('cpu_per_1k'), 2)} | "
                    f"{_num(r.get('peak_rss_mb'))} | {_num(r.get('peak_pss_mb'))} |"
                )
            label = ""
        mw, pf = by.get("mailwright"), by.get("postfix")
        if mw and pf and "error" not in mw and "error" not in pf:
            rows.append(
                f"| | **mailwright / Postfix** | {_ratio(mw['accepted_per_s'], pf['accepted_per_s'])} | "
                f"{_ratio(mw['e2e_per_s'], pf['e2e_per_s'])} | "
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


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    s = doc.get("smtp", {})
    parts = [
        f"**{m['date']}** · {machine.one_line(m)} · mailwright {doc.get('mailwright_version', '?')}"
        f" (commit {m['commit']}) vs Postfix {doc.get('postfix_version', '?')}",
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
            + f"; data on {s.get('filesystem', '?')} with each server's default fsync.",
            "",
            smtp_table(s["runs"]),
            "",
        ]
        if s.get("idle"):
            parts += [idle_table(s["idle"]), ""]
    return "\n".join(parts)
