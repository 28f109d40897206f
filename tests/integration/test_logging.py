"""Logs: one line per SMTP transaction carrying its queue id, in logfmt or JSON."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

from tests.integration.server import Server


def _send(server: Server) -> str:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@remote.test")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(b"Subject: logged\r\n\r\nx\r\n")
        assert code == 250
    return text.decode().rsplit(" ", 1)[1]  # "Ok: queued as <id>"


def test_json_log_has_one_line_per_transaction(tmp_path: Path) -> None:
    server = Server.create(tmp_path / "mw", MAILWRIGHT_LOG__FORMAT="json").start()
    try:
        queue_id = _send(server)
        server.stop()
        records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        done = [r for r in records if r.get("queue_id") == queue_id]
        assert [r["event"] for r in done] == ["smtp.delivered"]
        [r] = done
        assert r["sender"] == "<sender@remote.test>"
        assert r["rcpt"] == "alice@example.test"
        assert r["reply"].startswith("250 2.0.0")
        assert r["conn"] and any(
            x.get("event") == "smtp.disconnect" and x.get("conn") == r["conn"] for x in records
        )
    finally:
        server.kill()


def test_logfmt_by_default(server: Server) -> None:
    queue_id = _send(server)
    lines = [line for line in server.log().splitlines() if f"queue_id={queue_id}" in line]
    assert len(lines) == 1
    assert "event=smtp.delivered" in lines[0]
    assert 'reply="250 2.0.0 Ok: queued as' in lines[0]
