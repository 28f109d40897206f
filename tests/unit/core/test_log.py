"""``core.log``: ``event`` writes the same line whether it goes straight to the handler
``configure`` installed or through the logging machinery."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwright.core import log as core_log
from mailwright.core.log import TRACE, configure, event

_FIELDS = {
    "queue_id": "0bcdfghjklmn12",
    "conn": "abcdefgh",
    "helo": "",
    "sender": "<a b@example.test>",
    "quote": 'say "hi"',
    "path": "C:\\dir",
    "eq": "a=b",
    "utf8": "héllo wörld",
    "control": "tab\there",
    "nrcpt": 3,
    "none": None,
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where ``_configure`` makes the log go; the logging state is put back afterwards."""
    root = logging.getLogger("mailwright")
    saved = (root.handlers[:], root.level, root.propagate, core_log._direct)
    yield io.StringIO()
    root.handlers[:], root.level, root.propagate, core_log._direct = saved


def _configure(out: io.StringIO, fmt: str = "logfmt", level: str = "info") -> None:
    """``configure``, with its handler writing to ``out`` instead of stderr."""
    configure(fmt, level)
    handler = logging.getLogger("mailwright").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def _both_ways(out: io.StringIO, fmt: str, **fields: object) -> tuple[str, str]:
    """The line ``event`` writes directly, and the one logging's own path writes."""
    _configure(out, fmt)
    log = logging.getLogger("mailwright.test.direct")
    event(log, logging.WARNING, "test.event", **fields)
    direct = core_log._direct
    core_log._direct = None
    event(log, logging.WARNING, "test.event", **fields)
    core_log._direct = direct
    first, second = _lines(out)[-2:]
    return first, second


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_the_direct_line_is_the_logging_line(stream: io.StringIO, fmt: str) -> None:
    direct, logged = _both_ways(stream, fmt, **_FIELDS)
    # The two were made a moment apart: only the timestamps may differ.
    if fmt == "json":
        record, other = json.loads(direct), json.loads(logged)
        assert list(record) == list(other)
        assert record | {"ts": ""} == other | {"ts": ""}
    else:
        assert direct.split(" ", 1)[1] == logged.split(" ", 1)[1]
    if fmt == "json":
        assert record["level"] == "warning"
        assert record["event"] == "test.event"
        assert record["nrcpt"] == 3
        assert record["none"] is None
    else:
        assert direct.split(" ", 1)[0].startswith("ts=")
        assert " level=warning event=test.event queue_id=0bcdfghjklmn12 " in direct
        assert ' helo="" sender="<a b@example.test>" quote="say \\"hi\\""' in direct
        assert ' path="C:\\\\dir" eq="a=b" utf8="héllo wörld" control="tab\\there"' in direct
        assert direct.endswith(" nrcpt=3 none=None")


@given(st.text(max_size=30))
def test_a_logfmt_value_reads_back(text: str) -> None:
    value = core_log._logfmt_value(text)
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        assert json.loads(value) == text
    else:
        assert value == text
        assert text and text.isprintable()
        assert not any(c in text for c in ' ="\\')


def test_levels_below_the_configured_one_write_nothing(stream: io.StringIO) -> None:
    _configure(stream)
    event(logging.getLogger("mailwright.test"), logging.DEBUG, "hidden")
    event(logging.getLogger("mailwright.test"), TRACE, "hidden")
    assert _lines(stream) == []


def test_another_handler_gets_every_record(stream: io.StringIO) -> None:
    """A handler added after ``configure`` (a test's capture, an embedding program's own)
    sees the records: ``event`` then goes through logging for that logger."""
    _configure(stream)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    child = logging.getLogger("mailwright.test.kept")
    keep = Keep()
    child.addHandler(keep)
    try:
        event(child, logging.INFO, "kept.event", n=1)
        event(logging.getLogger("mailwright.test.other"), logging.INFO, "other.event")
    finally:
        child.removeHandler(keep)
    assert [r.getMessage() for r in seen] == ["kept.event"]
    assert getattr(seen[0], "fields", None) == {"n": 1}
    lines = _lines(stream)
    assert len(lines) == 2
    assert "event=kept.event n=1" in lines[0]
    assert "event=other.event" in lines[1]


def test_a_failing_stream_is_reported_not_raised(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(stream)

    class Broken(io.StringIO):
        def write(self, _text: str) -> int:
            raise OSError("disk full")

    direct = core_log._direct
    assert direct is not None
    monkeypatch.setattr(direct.handler, "stream", Broken())
    monkeypatch.setattr(logging, "raiseExceptions", False)  # as in production
    event(logging.getLogger("mailwright.test"), logging.ERROR, "lost.event")
