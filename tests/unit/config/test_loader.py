"""load_config / parse_config: defaults, typing, environment overrides, errors naming keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mailwright.config import (
    ENV_CONFIG,
    Config,
    LogConfig,
    SmtpConfig,
    TlsConfig,
    load_config,
    parse_config,
)
from mailwright.config.loader import parse_listen
from mailwright.core.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "mailwright.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(data: dict[str, Any], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ=environ)
    return info.value


# -- defaults and paths -------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'data_dir = "/srv/mail"\n'), environ={})
    assert config == Config(data_dir="/srv/mail")
    assert config.hostname == "localhost"
    assert config.smtp == SmtpConfig()
    assert config.smtp.listen == ("127.0.0.1:2525",)
    assert config.smtp.max_message_size == 25 * 1024 * 1024
    assert config.smtp.bare_lf == "reject"
    assert config.tls == TlsConfig("tls/cert.pem", "tls/key.pem")
    assert config.log == LogConfig("logfmt", "info")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'data_dir = "/srv"\n'), environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hostname = "x"  # type: ignore[misc]


def test_relative_data_dir_is_resolved_against_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", 'data_dir = "../var/mail"\n')
    monkeypatch.chdir("/")  # not against the working directory
    assert load_config(path, environ={}).data_dir == str(tmp_path.resolve() / "var" / "mail")
    dot = write(tmp_path, 'data_dir = "."\n', "dot.toml")
    assert load_config(dot, environ={}).data_dir == str(tmp_path.resolve())


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, 'data_dir = "/a/b"\n'), environ={}).data_dir == "/a/b"


def test_parse_config_without_base_keeps_data_dir_as_given() -> None:
    assert parse_config({"data_dir": "rel"}).data_dir == "rel"


def test_data_dir_is_required() -> None:
    assert error({}).key == "data_dir"


def test_full_file(tmp_path: Path) -> None:
    text = """
data_dir = "/srv/mail"
hostname = "mx.example.test"

[smtp]
listen = ["0.0.0.0:25", "[::]:25"]
max_message_size = 1048576
max_recipients = 50
bare_lf = "normalize"
eight_bit_headers = "reject"
error_delay = 0
idle_timeout = 30
subaddress_delimiter = "-"

[tls]
cert = "/etc/ssl/cert.pem"
key = "/etc/ssl/key.pem"

[log]
format = "json"
level = "trace"
"""
    config = load_config(write(tmp_path, text), environ={})
    assert config.hostname == "mx.example.test"
    assert config.smtp.listen == ("0.0.0.0:25", "[::]:25")
    assert config.smtp.max_message_size == 1048576
    assert config.smtp.max_recipients == 50
    assert config.smtp.bare_lf == "normalize"
    assert config.smtp.eight_bit_headers == "reject"
    assert config.smtp.error_delay == 0.0 and isinstance(config.smtp.error_delay, float)
    assert config.smtp.idle_timeout == 30.0 and isinstance(config.smtp.idle_timeout, float)
    assert config.smtp.subaddress_delimiter == "-"
    assert config.tls.cert == "/etc/ssl/cert.pem"
    assert config.log == LogConfig("json", "trace")


def test_single_listen_string_is_a_list_of_one() -> None:
    config = parse_config({"data_dir": "/d", "smtp": {"listen": "127.0.0.1:25"}})
    assert config.smtp.listen == ("127.0.0.1:25",)


# -- errors name the key ------------------------------------------------------------


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n[smtp]\nmax_mesage_size = 10\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.key == "smtp.max_mesage_size"
    assert "smtp.max_mesage_size" in str(info.value)
    assert "unknown" in str(info.value)


def test_unknown_top_level_key_and_section() -> None:
    assert error({"data_dir": "/d", "hostnme": "x"}).key == "hostnme"
    assert error({"data_dir": "/d", "jmap": {}}).key == "jmap"


def test_imap_section() -> None:
    config = parse_config({"data_dir": "/d", "imap": {"listen": ["127.0.0.1:1143"]}})
    assert config.imap.listen == ("127.0.0.1:1143",)
    assert config.imap.idle_timeout == 1800.0
    assert error({"data_dir": "/d", "imap": {"max_line": 100}}).key == "imap.max_line"
    assert error({"data_dir": "/d", "imap": {"listen_tls": ["nowhere"]}}).key.startswith(
        "imap.listen_tls"
    )


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"smtp": {"max_recipients": "5"}}, "smtp.max_recipients", "integer"),
        ({"smtp": {"max_recipients": True}}, "smtp.max_recipients", "integer"),
        ({"smtp": {"max_recipients": 1.5}}, "smtp.max_recipients", "integer"),
        ({"smtp": {"error_delay": "1s"}}, "smtp.error_delay", "number"),
        ({"smtp": {"error_delay": False}}, "smtp.error_delay", "number"),
        ({"hostname": 5}, "hostname", "string"),
        ({"smtp": {"listen": 25}}, "smtp.listen", "list"),
        ({"smtp": {"listen": ["127.0.0.1:25", 26]}}, "smtp.listen[1]", "string"),
        ({"smtp": "yes"}, "smtp", "table"),
        ({"tls": {"cert": ["a"]}}, "tls.cert", "string"),
    ],
)
def test_wrong_type_names_the_key(data: dict[str, Any], key: str, words: str) -> None:
    exc = error({"data_dir": "/d", **data})
    assert exc.key == key
    assert words in exc.problem


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("smtp", "bare_lf", "accept"),
        ("smtp", "eight_bit_headers", "maybe"),
        ("log", "format", "xml"),
        ("log", "level", "INFO"),
    ],
)
def test_literal_choices(section: str, key: str, value: str) -> None:
    exc = error({"data_dir": "/d", section: {key: value}})
    assert exc.key == f"{section}.{key}"
    assert "must be one of" in exc.problem and repr(value) in exc.problem


@pytest.mark.parametrize(
    ("smtp", "key"),
    [
        ({"max_recipients": 0}, "smtp.max_recipients"),
        ({"max_message_size": -1}, "smtp.max_message_size"),
        ({"idle_timeout": 0}, "smtp.idle_timeout"),
        ({"max_line": 511}, "smtp.max_line"),
        ({"max_data_line": 999}, "smtp.max_data_line"),
        ({"error_delay": -0.5}, "smtp.error_delay"),
        ({"subaddress_delimiter": "+-"}, "smtp.subaddress_delimiter"),
        ({"listen": ["127.0.0.1"]}, "smtp.listen[0]"),
        ({"listen": ["ok:25", "host:99999"]}, "smtp.listen[1]"),
    ],
)
def test_value_checks(smtp: dict[str, Any], key: str) -> None:
    assert error({"data_dir": "/d", "smtp": smtp}).key == key


def test_empty_subaddress_delimiter_turns_it_off() -> None:
    assert parse_config({"data_dir": "/d", "smtp": {"subaddress_delimiter": ""}}).smtp == (
        SmtpConfig(subaddress_delimiter="")
    )


@pytest.mark.parametrize("hostname", ["", "mx example", "mx\r\nX-Evil: 1", "mx\0"])
def test_bad_hostname(hostname: str) -> None:
    assert error({"data_dir": "/d", "hostname": hostname}).key == "hostname"


# -- files ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", environ={})
    assert "not found" in str(info.value) and "nope.toml" in str(info.value)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})  # a directory
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize("text", ["data_dir = \n", "[smtp\n", 'data_dir = "/d"\ndata_dir = "/e"\n'])
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "not valid TOML" in str(info.value)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'data_dir = "/d\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "not valid TOML" in str(info.value)


# -- environment ------------------------------------------------------------------


def test_env_overrides_a_section_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n[smtp]\nmax_recipients = 100\nmax_errors = 3\n')
    config = load_config(path, environ={"MAILWRIGHT_SMTP__MAX_RECIPIENTS": "5"})
    assert config.smtp.max_recipients == 5
    assert config.smtp.max_errors == 3  # the rest of the section stays


def test_env_overrides_a_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\nhostname = "file.example"\n')
    config = load_config(path, environ={"MAILWRIGHT_HOSTNAME": "env.example"})
    assert config.hostname == "env.example"


def test_env_creates_a_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n')
    environ = {"MAILWRIGHT_LOG__LEVEL": "debug", "MAILWRIGHT_SMTP__LISTEN": '["[::1]:2525"]'}
    config = load_config(path, environ=environ)
    assert config.log.level == "debug"
    assert config.smtp.listen == ("[::1]:2525",)


def test_env_is_read_from_the_process_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILWRIGHT_SMTP__MAX_RECIPIENTS", "5")
    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "ignored.toml"))  # not a setting
    assert load_config(write(tmp_path, 'data_dir = "/d"\n')).smtp.max_recipients == 5


def test_env_overrides_are_checked_and_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"MAILWRIGHT_SMTP__MAX_RECIPIENTS": "many"})
    assert info.value.key == "smtp.max_recipients"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"MAILWRIGHT_SMTP__MAX_RECIPENTS": "5"})
    assert info.value.key == "smtp.max_recipents"


def test_env_data_dir_is_resolved_like_the_files(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n')
    config = load_config(path, environ={"MAILWRIGHT_DATA_DIR": "spool"})
    assert config.data_dir == str(tmp_path.resolve() / "spool")


def test_other_environment_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "/d"\n')
    assert load_config(path, environ={"HOME": "/x", "MAILWRIGHTX": "1"}) == Config("/d")


# -- listen addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:25", ("::1", 25)),
        ("[::]:587", ("::", 587)),
        ("mail.example.test:2525", ("mail.example.test", 2525)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        ":25",
        "host:",
        "host:x",
        "host:65536",
        "host:-1",
        "host:+25",
        "host:\u00b2",  # "²".isdigit() is True, int("²") raises
        "host:\u0663",  # ARABIC-INDIC DIGIT THREE
        "[::1]",
        "[::1:25",
        "::1:25",  # an IPv6 address without brackets is ambiguous
        "[]:25",
        "[localhost]:25",
        "1.2.3.4]:25",
        "",
    ],
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listen(text, "smtp.listen[0]")
    assert info.value.key == "smtp.listen[0]"


def test_env_string_settings_keep_their_text() -> None:
    from mailwright.config import parse_config

    c = parse_config(
        {"data_dir": "/x"},
        environ={
            "MAILWRIGHT_HOSTNAME": "123",
            "MAILWRIGHT_LOG__FORMAT": '"json"',
            "MAILWRIGHT_SMTP__MAX_ERRORS": "7",
        },
    )
    assert (c.hostname, c.log.format, c.smtp.max_errors) == ("123", "json", 7)
