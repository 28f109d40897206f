"""The POP3 bench's mailbox: the same 20 messages (~52 KB each) in every user's INBOX.

Deterministic (seeded), so every run and both servers serve byte-identical messages.
Each one is a realistic multipart/mixed mail: a text/plain part of prose and a base64
attachment, CRLF line ends, and body lines that start with "." (one is a lone ".") so
that SMTP and POP3 dot-stuffing are exercised on the way in and on the way out.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

MESSAGES = 20
TARGET_SIZE = 52_000  # bytes per message, roughly
DOMAIN = "example.test"
SENDER = f"bench-sender@{DOMAIN}"
LIST_ADDRESS = f"bench-list@{DOMAIN}"  # the To: header, the same for every user
# The bench recognises a retrieved message by this header (its index in the corpus).
SEQ_HEADER = b"X-Bench-Seq: "

_PROSE = (
    "the quarterly report shows that our mail volume grew steadily while the queue "
    "stayed short and most deliveries finished within seconds of arrival please "
    "review the attached figures before the meeting on thursday we also need to "
    "decide whether the archive should keep attachments for seven years or ten and "
    "who will own the migration of the old mailboxes the vendor confirmed that the "
    "new disks arrive next week so the maintenance window can stay as planned thanks "
    "for the quick answers regards see you at the office tomorrow morning"
)
_WORDS = _PROSE.split()

# Lines a mail body really contains that begin with a dot; the lone "." would end
# the DATA / multi-line response if a side forgot to stuff it.
_DOT_LINES = (
    ".",
    "...and that was the last item on the list.",
    ". indented with a leading dot",
    "..two dots already",
    ".signature follows",
)


def _paragraph(rng: random.Random, words: int) -> list[str]:
    lines, line = [], ""
    for _ in range(words):
        w = rng.choice(_WORDS)
        if len(line) + len(w) + 1 > 72:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w.capitalize()
    if line:
        lines.append(line.rstrip() + ".")
    return lines


def message(index: int, size: int = TARGET_SIZE) -> bytes:
    """Message number `index` (0-based) of the corpus, about `size` bytes, CRLF."""
    rng = random.Random(f"mailwright-pop3-bench-{index}")
    boundary = f"=_bench_{index:04d}_{rng.getrandbits(48):012x}"
    headers = [
        f"From: Bench Sender <{SENDER}>",
        f"To: Bench List <{LIST_ADDRESS}>",
        f"Subject: Quarterly figures, part {index + 1} of {MESSAGES}",
        f"Date: Mon, 2 Mar 2026 09:{index % 60:02d}:00 +0000",
        f"Message-ID: <bench-{index:04d}.{rng.getrandbits(32):08x}@{DOMAIN}>",
        f"{SEQ_HEADER.decode()}{index}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ]
    text: list[str] = ["Hello all,", ""]
    dots = list(_DOT_LINES)
    while sum(len(t) + 2 for t in text) < size * 0.25:
        text += _paragraph(rng, rng.randint(40, 120))
        text.append(dots.pop(0) if dots else "")
        text.append("")
    text += [*dots, "", "-- ", "Bench Sender"]
    # base64 grows by 4/3 and 78 bytes a line: fill what is left of the size.
    used = sum(len(x) + 2 for x in headers + text) + 400
    raw = rng.randbytes(max(1024, (size - used) * 3 // 4 * 76 // 78))
    b64 = base64.b64encode(raw).decode()
    attachment = [b64[i : i + 76] for i in range(0, len(b64), 76)]
    parts = [
        *headers,
        "",
        "This is a multi-part message in MIME format.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        *text,
        "",
        f"--{boundary}",
        f'Content-Type: application/octet-stream; name="figures-{index + 1}.bin"',
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="figures-{index + 1}.bin"',
        "",
        *attachment,
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(parts).encode()


def messages(count: int = MESSAGES, size: int = TARGET_SIZE) -> list[bytes]:
    return [message(i, size) for i in range(count)]


def write(directory: Path, msgs: list[bytes]) -> list[Path]:
    """The corpus as files NN.eml (the load client checks retrieved mail against them)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(msgs):
        p = directory / f"{i:02d}.eml"
        p.write_bytes(data)
        paths.append(p)
    return paths
