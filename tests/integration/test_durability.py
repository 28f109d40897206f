"""Durability: once a 250 is sent for a message, a SIGKILL the next instant loses nothing.

Several senders deliver concurrently; the server is killed with SIGKILL mid-load and
restarted; every message that got its 250 must be in every recipient's INBOX, whole,
exactly once; nothing half-written may be visible; the server then serves again.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.server import Server, worker_pids

SENDERS = 8
KILL_AFTER_ACKS = 150
MAX_SECONDS = 20.0


def _body(sender: int, n: int) -> bytes:
    marker = f"msg-{sender}-{n}"
    # Every 7th message is larger than the inline limit, so it goes through a blob file.
    filler = (b"z" * 70 + b"\r\n") * (2000 if n % 7 == 3 else 5)
    return (
        f"Subject: {marker}\r\nX-Marker: {marker}\r\n\r\n".encode()
        + filler
        + f"end {marker}\r\n".encode()
    )


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = Server.create(
        tmp_path / "mw", users=("alice@example.test", "bob@example.test")
    ).start()
    acked: dict[str, bytes] = {}
    sent: dict[str, bytes] = {}
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def sender(i: int) -> None:
        n = 0
        deadline = time.monotonic() + MAX_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
                    while not stop.is_set() and time.monotonic() < deadline:
                        body = _body(i, n)
                        marker = f"msg-{i}-{n}"
                        n += 1
                        with lock:
                            sent[marker] = body
                        smtp.sendmail(
                            "load@remote.test", ["alice@example.test", "bob@example.test"], body
                        )
                        with lock:  # the 250 after DATA has arrived
                            acked[marker] = body
                            if len(acked) >= KILL_AFTER_ACKS:
                                enough.set()
            except (OSError, smtplib.SMTPException):
                if stop.is_set():
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(SENDERS)]
    for t in threads:
        t.start()
    assert enough.wait(MAX_SECONDS), "load did not get going"
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    with lock:
        acknowledged = dict(acked)
        attempted = dict(sent)
    assert len(acknowledged) >= KILL_AFTER_ACKS

    server.start()  # the restart sweeps what the crash left
    try:
        for user in ("alice@example.test", "bob@example.test"):
            stored = server.inbox(user)
            by_marker: dict[str, list[bytes]] = {}
            for msg in stored:
                marker = msg.split(b"X-Marker: ", 1)[1].split(b"\r\n", 1)[0].decode()
                by_marker.setdefault(marker, []).append(msg)
            for marker, body in acknowledged.items():
                assert marker in by_marker, f"{user}: acknowledged {marker} lost"
                assert len(by_marker[marker]) == 1, f"{user}: {marker} stored twice"
                assert by_marker[marker][0].endswith(body), f"{user}: {marker} not whole"
            # Anything else stored was sent but its 250 was lost with the kill: it must be whole.
            for marker, msgs in by_marker.items():
                assert marker in attempted
                assert all(m.endswith(attempted[marker]) for m in msgs)
        # Nothing half-written: no spill files, no blob file without its row, counts agree.
        blobs = server.data_dir / "blobs"
        assert not any((blobs / "tmp").glob("*")) if (blobs / "tmp").exists() else True
        with server.db() as db:
            paths = {
                p
                for (p,) in db.execute("SELECT blob_path FROM messages WHERE blob_path IS NOT NULL")
            }
            counts = db.execute(
                "SELECT b.message_count, (SELECT count(*) FROM placements p WHERE p.mailbox_id=b.id) FROM mailboxes b"
            ).fetchall()
        on_disk = {
            f"{d.name}/{f.name}" for d in blobs.iterdir() if d.name != "tmp" for f in d.iterdir()
        }
        assert on_disk == paths
        assert all(a == b for a, b in counts)
        # And it serves again.
        with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
            smtp.sendmail(
                "load@remote.test",
                ["alice@example.test"],
                b"Subject: after\r\nX-Marker: after\r\n\r\nok\r\n",
            )
        assert server.inbox("alice@example.test")[-1].endswith(b"X-Marker: after\r\n\r\nok\r\n")
    finally:
        server.kill()


def _traced(pids: set[int], out: Path) -> subprocess.Popen[bytes]:
    """strace on every thread of ``pids`` (fsyncs and socket writes, with the files they
    go to), once it is attached to all of them."""
    tids = [int(t) for pid in pids for t in os.listdir(f"/proc/{pid}/task")]
    args = [a for tid in tids for a in ("-p", str(tid))]
    calls = "trace=fdatasync,fsync,write,writev,pwrite64,sendto,sendmsg"
    tracer = subprocess.Popen(
        ["strace", "-qq", "-y", "-s", "40", "-e", calls, "-o", str(out), *args]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        traced = [Path(f"/proc/{tid}/status").read_text() for tid in tids]
        if all("TracerPid:\t0\n" not in status for status in traced):
            return tracer
        time.sleep(0.05)
    tracer.kill()
    raise AssertionError("strace did not attach")


def _completed(lines: list[str]) -> list[str]:
    """strace's lines, a call that another thread's interrupted ("<unfinished ...>", later
    "<... resumed>") made whole again, in the order the calls returned."""
    out: list[str] = []
    open_calls: dict[str, str] = {}
    for line in lines:
        tid, _, rest = line.partition(" ")
        if rest.endswith("<unfinished ...>"):
            open_calls[tid] = line.removesuffix("<unfinished ...>")
        elif "resumed>" in rest and tid in open_calls:
            out.append(open_calls.pop(tid) + rest.split("resumed>", 1)[1])
        else:
            out.append(line)
    return out


def test_the_250_after_data_waits_for_the_fsync_of_the_log(tmp_path: Path) -> None:
    """Watched with strace in the worker: every write to the WAL made before the 250
    went out was fsynced before it (the grouped commit with synchronous=FULL)."""
    server = Server.create(tmp_path / "mw", MAILWRIGHT_WORKERS="1").start()
    trace = tmp_path / "strace.out"
    assert server.proc is not None
    try:
        tracer = _traced(worker_pids(server) or {server.proc.pid}, trace)
        try:
            with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
                smtp.sendmail("a@remote.test", ["alice@example.test"], b"Subject: s\r\n\r\nhi\r\n")
        finally:
            tracer.terminate()
            tracer.wait(timeout=10)
    finally:
        server.kill()
    lines = _completed(trace.read_text().splitlines())
    whole = "\n".join(lines)
    (reply,) = [
        i for i, line in enumerate(lines) if "<socket:" in line and '"250 2.0.0 Ok: queued' in line
    ]
    # Everything written to the WAL before the 250 was fsynced before it.
    wal = [i for i, line in enumerate(lines[:reply]) if "mailwright.db-wal>" in line]
    written = [i for i in wal if "pwrite" in lines[i]]
    assert written, whole
    assert any("sync(" in lines[i] and lines[i].endswith("= 0") for i in wal if i > written[-1]), (
        whole
    )
