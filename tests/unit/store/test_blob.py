"""SqliteBlobWriter: small bodies inline, large ones spilled, fsynced and renamed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailwright.store.sqlite import blob as blob_module
from mailwright.store.sqlite.blob import INLINE_MAX, SqliteBlobWriter


def test_inline_up_to_the_limit(tmp_path: Path) -> None:
    w = SqliteBlobWriter(tmp_path, inline_max=10)
    w.write(b"12345")
    w.write(b"67890")
    assert (w.size, w.inline) == (10, b"1234567890")
    assert not (tmp_path / "tmp").exists()
    w.finish("QUEUEID")  # nothing to do for an inline body
    assert w.final_path is None


def test_default_limit_is_128_kib() -> None:
    assert INLINE_MAX == 128 * 1024


def test_spills_past_the_limit(tmp_path: Path) -> None:
    w = SqliteBlobWriter(tmp_path, inline_max=10)
    w.write(b"12345678")
    w.write(b"901")
    assert w.inline is None and w.size == 11
    (spill,) = (tmp_path / "tmp").iterdir()
    w.write(b"more")
    w.finish("QUEUEID42")
    assert not spill.exists()
    assert w.final_path is not None
    sub, name = w.final_path.split("/")
    assert sub == "42" and name.startswith("QUEUEID42")
    assert (tmp_path / w.final_path).read_bytes() == b"12345678901more"


def test_finish_fsyncs_file_then_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(blob_module.os, "fsync", fsync)
    monkeypatch.setattr(blob_module.os, "replace", replace)
    w = SqliteBlobWriter(tmp_path, inline_max=4)
    w.write(b"0123456789")
    w.finish("ABCDEF")
    # Data durable before the name appears; the new name durable before the commit.
    assert events == ["fsync-file", "rename", "fsync-dir"]
    assert (tmp_path / "EF").is_dir()


def test_distinct_files_for_the_same_queue_id(tmp_path: Path) -> None:
    paths = []
    for data in (b"first-body", b"second-body"):
        w = SqliteBlobWriter(tmp_path, inline_max=4)
        w.write(data)
        w.finish("SAMEID")
        paths.append(w.final_path)
    assert paths[0] != paths[1]
    assert [(tmp_path / str(p)).read_bytes() for p in paths] == [b"first-body", b"second-body"]


def test_abort_removes_spill_file(tmp_path: Path) -> None:
    w = SqliteBlobWriter(tmp_path, inline_max=4)
    w.write(b"0123456789")
    w.abort()
    assert list((tmp_path / "tmp").iterdir()) == []
    w.abort()  # twice is harmless


def test_abort_inline(tmp_path: Path) -> None:
    w = SqliteBlobWriter(tmp_path, inline_max=100)
    w.write(b"abc")
    w.abort()
    assert w.inline == b""
