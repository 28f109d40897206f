"""Structured logging: every line is an event name plus key=value fields (logfmt or JSON).

Connections carry a ``conn`` id and messages a ``queue_id``, so one grep shows a whole life.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


_NEEDS_QUOTES = re.compile(r'[ ="\\]')


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text) or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _timestamp(record: logging.LogRecord) -> str:
    return f"{_second(int(record.created))}.{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={_timestamp(record)}", f"level={record.levelname.lower()}"]
        parts.append(f"event={_logfmt_value(record.getMessage())}")
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_logfmt_value(value)}")
        if record.exc_info:
            parts.append(f"exc={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(fmt: str = "logfmt", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger("mailwright")
    root.handlers[:] = [handler]
    root.setLevel(TRACE if level == "trace" else getattr(logging, level.upper()))
    root.propagate = False
    # Our lines name no thread, process or source line: the logging HOWTO's
    # "Optimization" switches spare every record those lookups (the caller's frame walk
    # is the dearest of them).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
