"""``mailwright send``, ``queue`` and ``history``, run as real subprocesses against a data
directory made by ``mailwright init`` (no server: ``send`` stores local mail and queues
remote mail in the store, the queue commands read and change the store).

RFC 6409 §8 (Message-ID and Date added), RFC 6376 (DKIM signature for mail that leaves),
RFC 5321 §2.3.8 (CRLF line ends).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwright.store.api import INBOX
from mailwright.store.sqlite import SqliteStore
from tests.integration.test_cli import db_rows, fails, mw, ok

QUEUED_AS = re.compile(
    r"queued as (\w+): (\d+) local delivery\(ies\), (\d+) remote recipient\(s\) queued"
)
LIST_LINE = re.compile(
    r"(?P<id>\w+)  \S+ \S+  <(?P<sender>[^>]*)> -> <(?P<rcpt>[^>]*)>"
    r"  tries=(?P<tries>\d+)  next=(?P<next>\S+ \S+)"
)
MESSAGE = (
    "From: Alice <alice@example.test>\n"
    "To: Carol <carol@remote.test>\n"
    "Subject: Hello\n"
    "\n"
    "First line.\n"
    "Second line.\n"
)
FAR_FUTURE = 4102444800  # 2100-01-01 00:00:00 UTC


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``init``ed data directory with users alice and bob, copied by each test."""
    data = tmp_path_factory.mktemp("queue-template") / "mw"
    ok("init", "--data-dir", str(data), "--domain", "example.test")
    config = data / "mailwright.toml"
    for user in ("alice@example.test", "bob@example.test"):
        ok("user", "add", user, "--password-stdin", config=config, stdin="secret\n")
    return data


@pytest.fixture
def cfg(template: Path, tmp_path: Path) -> Path:
    data = tmp_path / "mw"
    shutil.copytree(template, data)
    return data / "mailwright.toml"


def send(cfg: Path, *recipients: str, sender: str = "alice@example.test", **kw: object) -> str:
    """``mailwright send`` of ``MESSAGE`` (stdin) that must succeed; its queue id."""
    args = ["send", "--from", sender]
    for r in recipients:
        args += ["--to", r]
    kw.setdefault("stdin", MESSAGE)
    out = ok(*args, config=cfg, **kw)
    m = QUEUED_AS.fullmatch(out.strip())
    assert m is not None, out
    return m.group(1)


def inbox(cfg: Path, address: str) -> list[bytes]:
    """The messages in ``address``'s INBOX, read through the store."""

    async def read() -> list[bytes]:
        store = SqliteStore(cfg.parent, sweep=False, peers=False)
        try:
            account = await store.get_account(address)
            assert account is not None
            box = await store.get_mailbox(account.id, INBOX)
            return [
                await store.read_message(p.message_id) for p in await store.list_placements(box.id)
            ]
        finally:
            await store.close()

    return asyncio.run(read())


def queue_list(cfg: Path) -> list[dict[str, str]]:
    """``mailwright queue list``, parsed: one dict per queued recipient."""
    out = ok("queue", "list", config=cfg).splitlines()
    entries = [LIST_LINE.match(line) for line in out[:-1]]
    assert all(entries), out
    return [m.groupdict() for m in entries if m is not None]


def history_types(out: str, queue_id: str) -> list[tuple[str, str]]:
    """(event type, recipient) of each line of ``history`` / ``queue show`` for ``queue_id``."""
    found = []
    for line in out.splitlines():
        m = re.match(rf"\S+ \S+  {queue_id}  (\w+) *(?:<([^>]*)>)?", line)
        if m:
            found.append((m.group(1), m.group(2) or ""))
    return found


def when(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


# -- send ------------------------------------------------------------------------------


def test_send_to_a_local_user(cfg: Path) -> None:
    qid = send(cfg, "bob@example.test")
    (stored,) = inbox(cfg, "bob@example.test")
    assert stored.startswith(b"Return-Path: <alice@example.test>\r\nReceived: ")
    assert f" id {qid}".encode() in stored
    header, _, body = stored.partition(b"\r\n\r\n")
    assert body == b"First line.\r\nSecond line.\r\n"
    # RFC 6409 §8.3: the missing Message-ID and Date are added, once each.
    assert re.search(rb"\r\nMessage-ID: <" + qid.encode() + rb"\.\w+@[^>]+>(\r\n|$)", header)
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}(\r\n|$)", header)
    assert header.count(b"Message-ID:") == 1 and header.count(b"\nDate:") == 1
    # Local copies are not signed, and nothing is queued.
    assert b"DKIM-Signature" not in stored
    assert db_rows(cfg, "SELECT count(*) FROM queue") == [(0,)]
    assert inbox(cfg, "alice@example.test") == []


def test_send_keeps_a_message_id_and_date(cfg: Path) -> None:
    message = (
        "Message-ID: <given-1@example.test>\nDate: Tue, 14 Nov 2023 22:13:20 +0000\n" + MESSAGE
    )
    send(cfg, "bob@example.test", stdin=message)
    (stored,) = inbox(cfg, "bob@example.test")
    header = stored.partition(b"\r\n\r\n")[0]
    assert header.count(b"Message-ID:") == 1 and b"<given-1@example.test>" in header
    assert header.count(b"\nDate:") == 1


def test_send_prints_the_queue_id_of_the_stored_message(cfg: Path) -> None:
    out = ok("send", "--to", "bob@example.test", config=cfg, stdin=MESSAGE)
    m = QUEUED_AS.fullmatch(out.strip())
    assert m is not None and m.groups()[1:] == ("1", "0"), out
    assert db_rows(cfg, "SELECT queue_id FROM messages") == [(m.group(1),)]
    # No --from: the null sender.
    assert inbox(cfg, "bob@example.test")[0].startswith(b"Return-Path: <>\r\n")


def test_send_to_a_remote_address_is_queued(cfg: Path) -> None:
    before = int(time.time())
    out = ok(
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "carol@remote.test",
        config=cfg,
        stdin=MESSAGE,
    )
    m = QUEUED_AS.fullmatch(out.strip())
    assert m is not None and m.groups()[1:] == ("0", "1"), out
    qid = m.group(1)
    (entry,) = queue_list(cfg)
    assert entry["id"] == qid
    assert (entry["sender"], entry["rcpt"], entry["tries"]) == (
        "alice@example.test",
        "carol@remote.test",
        "0",
    )
    assert before - 1 <= when(entry["next"]) <= time.time() + 1  # due at once
    assert ok("queue", "list", config=cfg).endswith("1 message(s), 1 recipient(s) queued\n")
    # Nothing in a local mailbox.
    assert inbox(cfg, "alice@example.test") == [] and inbox(cfg, "bob@example.test") == []


def test_queue_show_lists_entries_and_history(cfg: Path) -> None:
    qid = send(cfg, "carol@remote.test", "dave@remote.test", "bob@example.test")
    out = ok("queue", "show", qid, config=cfg)
    lines = out.splitlines()
    entries = [LIST_LINE.match(line) for line in lines[:2]]
    assert [e.group("rcpt") for e in entries if e] == ["carol@remote.test", "dave@remote.test"]
    assert history_types(out, qid) == [
        ("received", ""),
        ("queued", "carol@remote.test"),
        ("queued", "dave@remote.test"),
    ]
    assert "source='local'" in out
    assert "delivered='bob@example.test'" in out  # the local recipients, in the arrival


def test_history_by_queue_id_and_by_message_id(cfg: Path) -> None:
    qid = send(cfg, "carol@remote.test")
    by_id = ok("history", qid, config=cfg)
    assert history_types(by_id, qid) == [("received", ""), ("queued", "carol@remote.test")]
    # The Message-ID was added by send: the events carry it.
    ((mid,),) = db_rows(cfg, f"SELECT DISTINCT message_id FROM events WHERE queue_id='{qid}'")
    assert isinstance(mid, str) and mid.startswith(f"{qid}."), mid  # kept without <>
    assert ok("history", f"<{mid}>", config=cfg) == by_id
    assert ok("history", mid, config=cfg) == by_id


def test_history_by_a_message_id_the_message_carried(cfg: Path) -> None:
    first = send(cfg, "carol@remote.test", stdin="Message-ID: <mine-7@example.test>\n" + MESSAGE)
    send(cfg, "dave@remote.test")  # another message: not in the first one's history
    out = ok("history", "<mine-7@example.test>", config=cfg)
    assert history_types(out, first) == [("received", ""), ("queued", "carol@remote.test")]
    assert len(out.splitlines()) == 2


def test_send_from_stdin_with_unix_line_ends_is_stored_with_crlf(cfg: Path) -> None:
    text = "From: alice@example.test\nSubject: lines\n\none\ntwo\n\nthree\n"
    ok(
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "-",
        config=cfg,
        stdin=text,
    )
    (stored,) = inbox(cfg, "bob@example.test")
    assert b"\r\nFrom: alice@example.test\r\nSubject: lines\r\n" in stored
    assert stored.endswith(b"\r\n\r\none\r\ntwo\r\n\r\nthree\r\n")
    assert stored.count(b"\n") == stored.count(b"\r\n")


def test_send_from_a_file(cfg: Path, tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"From: alice@example.test\r\nSubject: file\r\n\r\nmixed\nends\r\n")
    ok("send", str(path), "--from", "alice@example.test", "--to", "bob@example.test", config=cfg)
    (stored,) = inbox(cfg, "bob@example.test")
    assert stored.endswith(b"\r\n\r\nmixed\r\nends\r\n")
    assert stored.count(b"\n") == stored.count(b"\r\n")


# -- refusals --------------------------------------------------------------------------


def test_a_message_the_pipeline_refuses_is_not_stored(cfg: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep.eml"
    # MIME nested deeper than smtp.max_mime_depth (here 2): refused as on SMTP.
    parts = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(4)
    )
    path.write_bytes(b"From: alice@example.test\r\n" + parts + b"x\r\n")
    err = fails(
        "send",
        str(path),
        "--to",
        "bob@example.test",
        config=cfg,
        env={"MAILWRIGHT_SMTP__MAX_MIME_DEPTH": "2"},
    )
    assert "message refused" in err and "MIME" in err
    assert inbox(cfg, "bob@example.test") == []


def test_unknown_local_recipient_is_refused_the_others_get_it(cfg: Path) -> None:
    r = mw(
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "nobody@example.test",
        "--to",
        "bob@example.test",
        "--to",
        "carol@remote.test",
        config=cfg,
        stdin=MESSAGE,
    )
    assert r.code == 1, r
    assert "refused nobody@example.test" in r.err and "unknown local user" in r.err
    assert "Traceback" not in r.err
    m = QUEUED_AS.fullmatch(r.out.strip())
    assert m is not None and m.groups()[1:] == ("1", "1"), r.out
    assert len(inbox(cfg, "bob@example.test")) == 1
    assert [e["rcpt"] for e in queue_list(cfg)] == ["carol@remote.test"]


def test_every_recipient_refused_stores_nothing(cfg: Path) -> None:
    r = mw(
        "send",
        "--from",
        "alice@example.test",
        "--to",
        "nobody@example.test",
        "--to",
        "zed@example.test",
        config=cfg,
        stdin=MESSAGE,
    )
    assert r.code == 1, r
    assert "refused nobody@example.test" in r.err and "refused zed@example.test" in r.err
    assert "no recipient accepted; nothing sent" in r.err
    assert r.out == ""
    assert db_rows(cfg, "SELECT count(*) FROM messages") == [(0,)]
    assert db_rows(cfg, "SELECT count(*) FROM queue") == [(0,)]
    assert db_rows(cfg, "SELECT count(*) FROM events") == [(0,)]


def test_a_message_file_that_does_not_exist(cfg: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.eml"
    r = mw("send", str(missing), "--to", "bob@example.test", config=cfg)
    assert r.code == 1
    assert f"cannot read {missing}: No such file or directory" in r.err
    assert db_rows(cfg, "SELECT count(*) FROM messages") == [(0,)]


def test_a_bad_address_is_refused(cfg: Path) -> None:
    r = mw("send", "--to", "not an address", config=cfg, stdin=MESSAGE)
    assert r.code == 1
    assert "bad address 'not an address'" in r.err
    assert db_rows(cfg, "SELECT count(*) FROM messages") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("queue", "show", "NOPE"), "no message NOPE in the queue or its history"),
        (("queue", "retry", "NOPE"), "no message NOPE in the queue"),
        (("queue", "delete", "NOPE"), "no message NOPE in the queue"),
        (("history", "NOPE"), "no history for NOPE (a queue id or a Message-ID)"),
        (("history", "<nope@example.test>"), "no history for <nope@example.test>"),
    ],
)
def test_unknown_ids(cfg: Path, args: tuple[str, ...], message: str) -> None:
    send(cfg, "carol@remote.test")
    before = db_rows(cfg, "SELECT queue_id, next_attempt FROM queue")
    r = mw(*args, config=cfg)
    assert r.code == 1, r
    assert message in r.err
    assert r.out == ""
    assert db_rows(cfg, "SELECT queue_id, next_attempt FROM queue") == before


@pytest.mark.parametrize(
    "args",
    [
        ("queue", "show", "NOPE"),
        ("queue", "retry", "NOPE"),
        ("queue", "delete", "NOPE"),
        ("history", "NOPE"),
        ("send", "/nonexistent/message.eml", "--to", "bob@example.test"),
        ("send", "--to", "not an address"),
    ],
)
def test_queue_command_errors_are_one_line(cfg: Path, args: tuple[str, ...]) -> None:
    fails(*args, config=cfg)


def test_installed_script_prints_queue_errors_as_one_line(cfg: Path) -> None:
    script = Path(sys.executable).parent / "mailwright"
    if not script.exists():
        pytest.skip("the mailwright script is not installed beside this Python")
    proc = subprocess.run(
        [str(script), "--config", str(cfg), "queue", "show", "NOPE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == "mailwright: error: no message NOPE in the queue or its history\n"


# -- retry, flush, delete --------------------------------------------------------------


def postpone(cfg: Path) -> None:
    """Every queued recipient's next attempt far in the future (as after failed tries)."""
    conn = sqlite3.connect(cfg.parent / "mailwright.db")
    try:
        with conn:
            conn.execute("UPDATE queue SET next_attempt=?", (FAR_FUTURE,))
    finally:
        conn.close()


def test_retry_makes_one_message_due_now(cfg: Path) -> None:
    first = send(cfg, "carol@remote.test", "dave@remote.test")
    second = send(cfg, "erin@remote.test")
    postpone(cfg)
    assert {e["next"] for e in queue_list(cfg)} == {"2100-01-01 00:00:00"}
    before = int(time.time())
    assert ok("queue", "retry", first, config=cfg) == f"2 recipient(s) of {first} due now\n"
    after = time.time()
    for e in queue_list(cfg):
        if e["id"] == first:
            assert before <= when(e["next"]) <= after, e
        else:
            assert e["id"] == second and e["next"] == "2100-01-01 00:00:00", e


def test_flush_makes_every_message_due_now(cfg: Path) -> None:
    send(cfg, "carol@remote.test", "dave@remote.test")
    send(cfg, "erin@remote.test")
    postpone(cfg)
    before = int(time.time())
    assert ok("queue", "flush", config=cfg) == "3 recipient(s) due now\n"
    after = time.time()
    entries = queue_list(cfg)
    assert len(entries) == 3
    assert all(before <= when(e["next"]) <= after for e in entries), entries


def test_flush_of_an_empty_queue(cfg: Path) -> None:
    assert ok("queue", "flush", config=cfg) == "0 recipient(s) due now\n"
    assert ok("queue", "list", config=cfg) == "0 message(s), 0 recipient(s) queued\n"


def test_delete_drops_the_entries_and_records_it(cfg: Path) -> None:
    gone = send(cfg, "carol@remote.test", "dave@remote.test", "bob@example.test")
    kept = send(cfg, "erin@remote.test")
    out = ok("queue", "delete", gone, config=cfg)
    assert out == f"deleted 2 recipient(s) of {gone} (no bounce sent)\n"
    assert [e["id"] for e in queue_list(cfg)] == [kept]
    assert history_types(ok("history", gone, config=cfg), gone) == [
        ("received", ""),
        ("queued", "carol@remote.test"),
        ("queued", "dave@remote.test"),
        ("deleted", "carol@remote.test"),
        ("deleted", "dave@remote.test"),
    ]
    show = ok("queue", "show", gone, config=cfg)
    assert f"{gone}: not in the queue any more" in show
    # The local copy stays; a second delete finds nothing.
    assert len(inbox(cfg, "bob@example.test")) == 1
    r = mw("queue", "delete", gone, config=cfg)
    assert r.code == 1 and f"no message {gone} in the queue" in r.err


# -- DKIM ------------------------------------------------------------------------------


def test_remote_mail_from_the_local_domain_is_dkim_signed(cfg: Path) -> None:
    qid = send(cfg, "carol@remote.test", "bob@example.test")
    ((prefix,),) = db_rows(cfg, f"SELECT prefix FROM queue WHERE queue_id='{qid}'")
    assert isinstance(prefix, bytes) and prefix.startswith(b"DKIM-Signature:"), prefix
    assert b"d=example.test" in prefix
    # The signature goes out with the relayed copy only; the local copy has none.
    (stored,) = inbox(cfg, "bob@example.test")
    assert b"DKIM-Signature" not in stored


def test_remote_mail_from_another_domain_is_not_signed(cfg: Path) -> None:
    qid = send(cfg, "carol@remote.test", sender="someone@elsewhere.test")
    assert db_rows(cfg, f"SELECT prefix FROM queue WHERE queue_id='{qid}'") == [(b"",)]
