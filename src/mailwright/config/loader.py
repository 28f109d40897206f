"""TOML + environment → ``Config``, naming the offending key on any error.

Environment overrides: ``MAILWRIGHT_<SECTION>__<KEY>=value`` (``MAILWRIGHT_HOSTNAME`` for
top-level keys); the value is read as a TOML value when it parses as one, else as a string.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mailwright.config.model import Config
from mailwright.core.errors import ConfigError

ENV_CONFIG = "MAILWRIGHT_CONFIG"
_ENV_PREFIX = "MAILWRIGHT_"
_POSITIVE = {
    "max_message_size", "max_line", "max_data_line", "max_recipients", "max_header_size",
    "max_mime_depth", "max_errors", "idle_timeout", "tls_handshake_timeout", "session_timeout",
    "max_connections", "max_connections_per_ip",
}  # fmt: skip
_POP3_POSITIVE = {
    "idle_timeout", "login_timeout", "tls_handshake_timeout", "max_line", "max_errors",
    "max_connections", "max_connections_per_ip",
}  # fmt: skip

_IMAP_POSITIVE = _POP3_POSITIVE | {"max_literal", "max_append_size"}


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {p}") from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{p} is not valid TOML: {exc}") from None
    return parse_config(data, environ=os.environ if environ is None else environ, base=p.parent)


def parse_config(
    data: dict[str, Any], *, environ: Mapping[str, str] | None = None, base: Path | None = None
) -> Config:
    data = _apply_env(dict(data), environ or {})
    if "data_dir" not in data:
        raise ConfigError("data_dir", "required (where the database and blobs live)")
    config: Config = _build(Config, data, "")
    if base is not None and not Path(config.data_dir).is_absolute():
        config = dataclasses.replace(config, data_dir=str((base / config.data_dir).resolve()))
    _check(config)
    return config


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for name, text in environ.items():
        if not name.startswith(_ENV_PREFIX) or name == ENV_CONFIG:
            continue
        path = [part.lower() for part in name[len(_ENV_PREFIX) :].split("__")]
        value = _EnvText(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = value
    return data


class _EnvText(str):
    """An environment value: a string setting takes it as it is; any other setting
    reads it as a TOML value (``5``, ``true``, ``["a", "b"]``)."""

    def parsed(self) -> Any:
        try:
            return tomllib.loads(f"v = {self}")["v"]
        except tomllib.TOMLDecodeError:
            return str(self)


def _build(cls: type[Any], data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}", "unknown key")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _value(hints[f.name], data[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


def _value(hint: Any, value: Any, key: str) -> Any:
    if isinstance(value, _EnvText):
        literal = get_origin(hint) is Literal and all(isinstance(c, str) for c in get_args(hint))
        parsed = value.parsed()
        if (hint is str or literal) and not isinstance(parsed, str):
            parsed = str(value)  # MAILWRIGHT_HOSTNAME=123 is the name "123"
        value = parsed
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type[Any], hint), value, key + ".")
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return value
    if origin is tuple:
        (item,) = get_args(hint)[:1]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return tuple(_value(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(key, "unsupported type")  # no optional settings yet
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {value!r}")
        return value
    raise ConfigError(key, "unsupported type")


def _check(config: Config) -> None:
    smtp = config.smtp
    for name in _POSITIVE:
        if getattr(smtp, name) <= 0:
            raise ConfigError(f"smtp.{name}", "must be greater than zero")
    if smtp.max_line < 512:
        raise ConfigError("smtp.max_line", "must be at least 512 (RFC 5321 §4.5.3.1.4)")
    if smtp.max_data_line < 1000:
        raise ConfigError("smtp.max_data_line", "must be at least 1000 (RFC 5322 §2.1.1)")
    if smtp.error_delay < 0:
        raise ConfigError("smtp.error_delay", "must not be negative")
    if len(smtp.subaddress_delimiter) > 1:
        raise ConfigError("smtp.subaddress_delimiter", "must be one character or empty")
    for i, item in enumerate(smtp.listen):
        parse_listen(item, f"smtp.listen[{i}]")
    for section, items in (
        ("listen", config.submission.listen),
        ("listen_tls", config.submission.listen_tls),
    ):
        for i, item in enumerate(items):
            parse_listen(item, f"submission.{section}[{i}]")
    pop3 = config.pop3
    for name in _POP3_POSITIVE:
        if getattr(pop3, name) <= 0:
            raise ConfigError(f"pop3.{name}", "must be greater than zero")
    if pop3.max_line < 512:
        raise ConfigError("pop3.max_line", "must be at least 512 (AUTH responses are long)")
    for section, items in (("listen", pop3.listen), ("listen_tls", pop3.listen_tls)):
        for i, item in enumerate(items):
            parse_listen(item, f"pop3.{section}[{i}]")
    imap = config.imap
    for name in _IMAP_POSITIVE:
        if getattr(imap, name) <= 0:
            raise ConfigError(f"imap.{name}", "must be greater than zero")
    if imap.max_line < 8192:
        raise ConfigError("imap.max_line", "must be at least 8192 (RFC 7162 §4)")
    for section, items in (("listen", imap.listen), ("listen_tls", imap.listen_tls)):
        for i, item in enumerate(items):
            parse_listen(item, f"imap.{section}[{i}]")
    for section, items in (("listen", config.http.listen), ("listen_tls", config.http.listen_tls)):
        for i, item in enumerate(items):
            parse_listen(item, f"http.{section}[{i}]")
    auth = config.auth
    for name in ("window", "max_ip_failures", "max_user_failures"):
        if getattr(auth, name) <= 0:
            raise ConfigError(f"auth.{name}", "must be greater than zero")
    for name in ("free_failures", "max_delay", "cache_ttl"):
        if getattr(auth, name) < 0:
            raise ConfigError(f"auth.{name}", "must not be negative")
    for name in ("max_ip_failures", "max_user_failures"):
        if getattr(auth, name) > 65535:
            raise ConfigError(f"auth.{name}", "must be at most 65535")
    if not 0 <= config.workers <= 64:
        raise ConfigError("workers", "must be between 0 (one per CPU) and 64")
    if not config.hostname or any(c in config.hostname for c in " \r\n\t\0"):
        raise ConfigError("hostname", "must be a host name without spaces")


def parse_listen(text: str, key: str = "listen") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port = text.rpartition(":")
    # isascii: str.isdigit() also accepts "²" (int() then fails) and other scripts' digits.
    ok = bool(sep and host and port.isascii() and port.isdigit() and int(port) <= 65535)
    if ok and (host.startswith("[") or host.endswith("]")):
        ok = host.startswith("[") and host.endswith("]") and ":" in host
        host = host[1:-1]
    elif ok and ":" in host:
        ok = False  # an IPv6 address needs brackets: "::1:25" is ambiguous
    if not ok:
        raise ConfigError(key, f"must be host:port or [ipv6]:port, not {text!r}")
    return host, int(port)
