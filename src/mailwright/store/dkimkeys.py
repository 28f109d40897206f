"""DKIM private keys per domain, as files under the data directory.

Layout: ``<data_dir>/dkim/<domain>/<selector>.<rsa|ed25519>.key``, ``<domain>`` in
A-labels, the key in the form ``message.dkim`` documents. The selectors are
``mw<YYYYMM>r`` (RSA) and ``mw<YYYYMM>e`` (Ed25519) from the creation month (UTC): a key
rotated in a later month gets a new selector, so the old record can stay published while
mail signed with the old key is still in transit (RFC 6376 §3.1, §6.1.2).

Invariants:
- a key file is created whole or not at all: written to a temporary file (mode 0600),
  fsynced, linked to its final name and the directory fsynced; a key file is never
  overwritten (two processes creating keys at once keep the first one);
- the directories are mode 0700: only the server's user reads private keys;
- the newest selector of each algorithm signs; selectors sort by their month.

These are blocking file operations: async code calls them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mailwright.message.dkim import Algorithm, DkimKey, ascii_domain, generate_key

DIR_NAME = "dkim"
_SUFFIX: dict[Algorithm, str] = {"rsa-sha256": "r", "ed25519-sha256": "e"}
_KIND: dict[Algorithm, str] = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
_ALGORITHM = {kind: algorithm for algorithm, kind in _KIND.items()}
_KEY_FILE = re.compile(r"(mw[0-9]{6}[re])\.(rsa|ed25519)\.key", re.ASCII)


def selector(algorithm: Algorithm, when: datetime) -> str:
    """``mw202501r``: the creation month in UTC and the algorithm's letter."""
    return f"mw{when.astimezone(UTC):%Y%m}{_SUFFIX[algorithm]}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(path: Path) -> None:
    if path.is_dir():
        return
    path.mkdir(mode=0o700)
    _fsync_dir(path.parent)  # the new directory entry survives a crash


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` atomically, mode 0600; keep an existing file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # link() never replaces an existing name, unlike rename(): a key another process
        # created meanwhile, and perhaps already published, is kept.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)


class DkimKeyStore:
    """The DKIM keys of every local domain."""

    def __init__(self, data_dir: Path, *, now: Callable[[], datetime] | None = None) -> None:
        self.root = Path(data_dir) / DIR_NAME
        self._now = now or (lambda: datetime.now(UTC))

    def _dir(self, domain: str) -> Path:
        # ascii_domain admits only host names, so the name cannot leave the key tree.
        return self.root / ascii_domain(domain)

    def keys(self, domain: str) -> list[DkimKey]:
        """The signing keys of ``domain`` (any case, U- or A-labels): the newest of each
        algorithm, RSA first; [] when it has none."""
        directory = self._dir(domain)
        newest: dict[Algorithm, str] = {}
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        for name in names:
            m = _KEY_FILE.fullmatch(name)
            if m is None:
                continue
            algorithm = _ALGORITHM[m[2]]
            if m[1][-1] == _SUFFIX[algorithm] and m[1] > newest.get(algorithm, ""):
                newest[algorithm] = m[1]
        return [
            DkimKey(
                domain=directory.name,
                selector=sel,
                algorithm=algorithm,
                private_key=(directory / f"{sel}.{_KIND[algorithm]}.key").read_bytes(),
            )
            for algorithm in _KIND  # RSA first: the signature every receiver checks
            if (sel := newest.get(algorithm)) is not None
        ]

    def create(self, domain: str) -> list[DkimKey]:
        """Make an RSA and an Ed25519 key for ``domain`` unless it has them; its keys."""
        directory = self._dir(domain)
        have = {key.algorithm for key in self.keys(domain)}
        missing = [a for a in _KIND if a not in have]
        if missing:
            _make_dir(self.root)
            _make_dir(directory)
            when = self._now()
            for algorithm in missing:
                path = directory / f"{selector(algorithm, when)}.{_KIND[algorithm]}.key"
                _write_new(path, generate_key(algorithm))
        return self.keys(domain)

    def remove(self, domain: str) -> None:
        """Delete every key of ``domain``; nothing to do when it has none."""
        directory = self._dir(domain)
        if not directory.exists():
            return
        shutil.rmtree(directory)
        _fsync_dir(self.root)
