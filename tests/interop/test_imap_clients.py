"""Real IMAP clients from Debian against mailwright: mbsync (isync) and offlineimap3 keep a
local Maildir tree and the server's mailbox tree in step both ways; getmail6 downloads
INBOX and empties it.

The server side: INBOX holds the awkward messages delivered over SMTP, and "Projects" and
"Projects/2026" (created over IMAP) hold APPENDed ones. Each sync must leave the local
Maildir with every message byte for byte as stored (apart from the local line end, LF,
and mbsync's own X-TUID header), every folder included, and flags the same on both
sides; changes made on either side between syncs must reach the other.

The clients run with HOME in a temporary directory and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.integration.server import Server
from tests.interop.conftest import require
from tests.interop.peers import (
    PASSWORD,
    USER,
    deliver,
    from_local,
    getmail_retrieves_everything,
    output,
    run,
)

# Messages APPENDed over IMAP to folders created over IMAP (CRLF lines, as IMAP wants),
# with the flags they are appended with.
APPENDED: dict[str, tuple[tuple[bytes, tuple[bytes, ...]], ...]] = {
    "Projects": (
        (b"From: bob@remote.test\r\nSubject: plan\r\n\r\nthe plan, read already\r\n", (b"\\Seen",)),
        (
            b"From: bob@remote.test\r\nSubject: =?UTF-8?Q?Entw=C3=BCrfe?=\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Entw\xc3\xbcrfe f\xc3\xbcr 2026\r\n.\r\n..\r\n",
            (b"\\Answered", b"\\Flagged"),
        ),
    ),
    "Projects/2026": (
        (b"From: carol@remote.test\r\nSubject: q1\r\n\r\nfirst quarter\r\n", ()),
        (b"From: carol@remote.test\r\nSubject: draft\r\n\r\nnot sent yet\r\n", (b"\\Draft",)),
    ),
}
LATE = b"From: late@remote.test\r\nSubject: arrived between syncs\r\n\r\nnew on the server\r\n"
# A message written straight into the local Maildir, in the local line end.
LOCAL = b"From: alice@example.test\nSubject: written locally\n\nfrom the Maildir side\n"

# Maildir info letters (the ":2," suffix) and the IMAP system flags they stand for.
MAILDIR_FLAGS = {"D": b"\\Draft", "F": b"\\Flagged", "R": b"\\Answered", "S": b"\\Seen"}
SYSTEM = frozenset(MAILDIR_FLAGS.values()) | {b"\\Deleted"}

# folder -> {message bytes: its flags}; the messages of one folder are all different.
Tree = dict[str, dict[bytes, frozenset[bytes]]]


def unchanged(message: bytes) -> bytes:
    return message


def imap(server: Server) -> IMAPClient:
    c = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=30)
    c.login(USER, PASSWORD)
    return c


def build_tree(server: Server) -> tuple[list[bytes], Tree]:
    """The server side every sync test starts from: INBOX as stored (in UID order), and
    the whole tree as server_tree should then show it (the folders every account starts
    with, Sent, Trash and the like, empty)."""
    stored = deliver(server)
    c = imap(server)
    try:
        tree: Tree = {name: {} for _attributes, _sep, name in c.list_folders()}
        tree["INBOX"] = dict.fromkeys(stored, frozenset())
        for folder, messages in APPENDED.items():
            c.create_folder(folder)
            for message, flags in messages:
                c.append(folder, message, flags=flags)
            tree[folder] = {m: frozenset(flags) for m, flags in messages}
    finally:
        c.logout()
    return stored, tree


def server_state(server: Server) -> dict[str, dict[int, tuple[frozenset[bytes], bytes]]]:
    """Every selectable folder: UID -> (system flags, message bytes)."""
    c = imap(server)
    try:
        state = {}
        for attributes, _sep, name in c.list_folders():
            if b"\\Noselect" in attributes:
                continue
            c.select_folder(name, readonly=True)
            uids = c.search("ALL")
            got = c.fetch(uids, ["FLAGS", "BODY.PEEK[]"]) if uids else {}
            state[name] = {
                uid: (frozenset(data[b"FLAGS"]) & SYSTEM, data[b"BODY[]"])
                for uid, data in got.items()
            }
            c.unselect_folder()
        return state
    finally:
        c.logout()


def server_tree(server: Server, normalise: Callable[[bytes], bytes] = unchanged) -> Tree:
    return {
        name: {normalise(body): flags for flags, body in messages.values()}
        for name, messages in server_state(server).items()
    }


def maildir_folders(root: Path) -> dict[str, Path]:
    """Every Maildir folder under ``root`` by its IMAP name (sub-folders as directories)."""
    return {
        p.parent.relative_to(root).as_posix(): p.parent
        for p in root.rglob("cur")
        if (p.parent / "new").is_dir()
    }


def maildir_files(folder: Path) -> list[Path]:
    return sorted([*(folder / "new").iterdir(), *(folder / "cur").iterdir()])


def maildir_flags(path: Path) -> frozenset[bytes]:
    _, _, info = path.name.partition(":2,")
    return frozenset(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)


def local_tree(root: Path, normalise: Callable[[bytes], bytes] = unchanged) -> Tree:
    tree: Tree = {}
    for name, folder in maildir_folders(root).items():
        files = maildir_files(folder)
        tree[name] = {normalise(from_local(p.read_bytes())): maildir_flags(p) for p in files}
        assert len(tree[name]) == len(files), f"{folder}: the same message twice"
    return tree


def local_file(
    root: Path, folder: str, message: bytes, normalise: Callable[[bytes], bytes]
) -> Path:
    """The one file in a local folder holding ``message`` (as the server has it)."""
    [path] = [
        p
        for p in maildir_files(maildir_folders(root)[folder])
        if normalise(from_local(p.read_bytes())) == message
    ]
    return path


def set_local_flags(path: Path, letters: str) -> Path:
    """What a mail reader does to flag a message: move it to cur/ with a new info suffix."""
    base = path.name.partition(":2,")[0]
    target = path.parent.parent / "cur" / f"{base}:2,{letters}"
    path.rename(target)
    return target


def write_local(folder: Path, message: bytes) -> Path:
    """Deliver a message into a local Maildir folder the Maildir way (tmp/, then new/)."""
    name = f"{time.time_ns()}.P{os.getpid()}.mailwright-test"
    tmp = folder / "tmp" / name
    tmp.write_bytes(message)
    return tmp.rename(folder / "new" / name)


def change_server(server: Server, flag: bytes, expunge: bytes) -> None:
    """Another client's work on the server between syncs: flag one message in INBOX,
    expunge another, and a new one arrives over SMTP."""
    c = imap(server)
    try:
        c.select_folder("INBOX")
        bodies = {d[b"BODY[]"]: uid for uid, d in c.fetch(c.search("ALL"), ["BODY.PEEK[]"]).items()}
        c.add_flags([bodies[flag]], [b"\\Flagged"])
        c.delete_messages([bodies[expunge]])
        c.expunge()
    finally:
        c.logout()
    deliver(server, [LATE])


@dataclass
class SyncClient:
    """A sync client's command line, run to completion once per sync() with the whole
    transcript kept for assertion messages."""

    cmd: list[str]
    home: Path
    must_say: tuple[str, ...] = ()
    must_not_say: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)

    def sync(self) -> None:
        r = run(self.cmd, self.home)
        self.log.append(output(r))
        assert r.returncode == 0, self.transcript()
        said = r.stdout + r.stderr
        assert all(s in said for s in self.must_say), self.transcript()
        assert not any(s in said for s in self.must_not_say), self.transcript()

    def transcript(self) -> str:
        return "\n".join(self.log)


def two_way_sync(
    server: Server, client: SyncClient, root: Path, normalise: Callable[[bytes], bytes]
) -> None:
    """What both sync clients go through. ``root`` is the local Maildir tree the client
    keeps (INBOX in root/INBOX, sub-folders as sub-directories); ``normalise`` undoes the
    client's own additions to a message."""
    stored, expected = build_tree(server)

    # The first run copies the whole tree down: every folder, every byte, every flag.
    client.sync()
    assert local_tree(root, normalise) == server_tree(server) == expected, client.transcript()

    # Changes on both sides. Locally: one message read and flagged, one deleted, one
    # written into a sub-folder. On the server: one flagged, one expunged, one delivered.
    read, deleted, flagged, expunged, untouched = stored
    set_local_flags(local_file(root, "INBOX", read, normalise), "FS")
    local_file(root, "INBOX", deleted, normalise).unlink()
    write_local(root / "Projects" / "2026", LOCAL)
    change_server(server, flag=flagged, expunge=expunged)

    # The second run takes each side's changes to the other.
    client.sync()
    after = server_tree(server, normalise)
    assert after["INBOX"] == {
        read: {b"\\Seen", b"\\Flagged"},
        flagged: {b"\\Flagged"},
        untouched: set(),
        server.inbox(USER)[-1]: set(),  # LATE, as stored
    }, client.transcript()
    assert after["Projects/2026"] == {
        **expected["Projects/2026"],
        from_local(LOCAL): set(),
    }, client.transcript()
    assert local_tree(root, normalise) == after, client.transcript()

    # A third run finds nothing to do: neither side changes at all (UIDs included).
    before = (server_state(server), sorted(root.rglob("*")))
    client.sync()
    assert (server_state(server), sorted(root.rglob("*"))) == before, client.log[-1]


# -- mbsync (isync) --------------------------------------------------------------------

TUID = re.compile(rb"^X-TUID: [^\r\n]*\r?\n", re.MULTILINE)


def without_tuid(message: bytes) -> bytes:
    """mbsync adds an ``X-TUID`` header line to each message it copies, to find the copy
    again should the run be cut short; the rest is the message as it was."""
    head, sep, body = message.partition(b"\r\n\r\n")
    head, n = TUID.subn(b"", head + b"\r\n")
    assert n <= 1, message[:400]
    return head[:-2] + sep + body


def mbsyncrc(server: Server, home: Path, root: Path, transport: str) -> Path:
    if transport == "plain":
        account = f"Host 127.0.0.1\nPort {server.imap_port}\nSSLType None\n"
    else:
        # isync 1.4 checks the certificate's DNS names only, never an IP address: so
        # "localhost" (127.0.0.1, which the certificate names) rather than 127.0.0.1.
        port = server.imap_port if transport == "starttls" else server.imaps_port
        kind = "STARTTLS" if transport == "starttls" else "IMAPS"
        account = f"Host localhost\nPort {port}\nSSLType {kind}\nCertificateFile {server.cert}\n"
    rc = home / ".mbsyncrc"
    rc.write_text(
        "IMAPAccount mw\n"
        f"{account}"
        f"User {USER}\n"
        f"Pass {PASSWORD}\n"
        "Timeout 30\n"
        "\n"
        "IMAPStore remote\n"
        "Account mw\n"
        "\n"
        "MaildirStore local\n"
        f"Path {root}/\n"
        f"Inbox {root}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel mw\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
    )
    rc.chmod(0o600)
    return rc


@pytest.mark.parametrize("transport", ["plain", "starttls", "imaps"])
def test_mbsync_two_way_sync(server: Server, tmp_path: Path, transport: str) -> None:
    home = tmp_path / "home"
    root = home / "Mail"
    root.mkdir(parents=True)
    rc = mbsyncrc(server, home, root, transport)
    # -Dn: the IMAP conversation (without message contents), shown on failure.
    client = SyncClient([require("mbsync"), "-c", str(rc), "-Dn", "-a"], home)
    if transport == "starttls":
        client.must_say = (">>> 1 STARTTLS\n", "Connection is now encrypted")
    two_way_sync(server, client, root, without_tuid)


# -- offlineimap3 ----------------------------------------------------------------------


def offlineimaprc(server: Server, home: Path, root: Path, transport: str) -> Path:
    if transport == "plain":
        remote = f"remotehost = 127.0.0.1\nremoteport = {server.imap_port}\nssl = no\n"
    else:
        # imaplib2, like isync, checks the certificate's DNS names only: "localhost".
        remote = (
            f"remotehost = localhost\nremoteport = {server.imaps_port}\n"
            f"ssl = yes\nsslcacertfile = {server.cert}\n"
        )
    rc = home / ".offlineimaprc"
    # sep = /: sub-folders as sub-directories, as mbsync's "SubFolders Verbatim".
    rc.write_text(
        "[general]\n"
        "accounts = mw\n"
        f"metadata = {home}/.offlineimap\n"
        "\n"
        "[Account mw]\n"
        "localrepository = local\n"
        "remoterepository = remote\n"
        "\n"
        "[Repository local]\n"
        "type = Maildir\n"
        f"localfolders = {root}\n"
        "sep = /\n"
        "\n"
        "[Repository remote]\n"
        "type = IMAP\n"
        f"{remote}"
        "starttls = no\n"
        f"remoteuser = {USER}\n"
        f"remotepass = {PASSWORD}\n"
        "timeout = 30\n"
    )
    rc.chmod(0o600)
    return rc


@pytest.mark.parametrize("transport", ["plain", "imaps"])
def test_offlineimap_sync(server: Server, tmp_path: Path, transport: str) -> None:
    home = tmp_path / "home"
    root = home / "Mail"
    home.mkdir()
    rc = offlineimaprc(server, home, root, transport)
    # -o: one run; -d imap: the IMAP conversation, shown on failure. offlineimap reports
    # a folder it could not sync, and still exits 0.
    client = SyncClient(
        [require("offlineimap"), "-c", str(rc), "-o", "-u", "basic", "-d", "imap"],
        home,
        must_not_say=("ERROR",),
    )
    two_way_sync(server, client, root, unchanged)


# -- getmail6 --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["plain", "imaps"])
def test_getmail_imap_downloads_byte_for_byte(
    server: Server, tmp_path: Path, maildir: Path, transport: str
) -> None:
    if transport == "plain":
        retriever = f"type = SimpleIMAPRetriever\nport = {server.imap_port}\n"
    else:
        retriever = (
            f"type = SimpleIMAPSSLRetriever\nport = {server.imaps_port}\nca_certs = {server.cert}\n"
        )
    # record_mailbox = false: no X-getmail-retrieved-from-mailbox header of getmail's own.
    getmail_retrieves_everything(server, tmp_path, maildir, retriever + "record_mailbox = false\n")
    # delete = true: INBOX is empty for IMAP too.
    c = imap(server)
    try:
        assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    finally:
        c.logout()
