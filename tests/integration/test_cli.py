"""The ``mailwright`` command line, run as a real subprocess against a real data directory.

Exit status: 0 ok, 1 error (one line on stderr), 2 usage.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailwright.config import load_config

TIMEOUT = 60


@dataclass
class Result:
    code: int
    out: str
    err: str


def mw(
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = "",
    cwd: Path | None = None,
) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_")}
    cmd = [sys.executable, "-m", "mailwright.cli.main"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.run(
        cmd + list(args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(*args: str, **kwargs: object) -> str:
    r = mw(*args, **kwargs)  # type: ignore[arg-type]
    assert r.code == 0, r.err
    assert r.err == ""
    return r.out


def fails(*args: str, **kwargs: object) -> str:
    """Run a command that must fail with status 1 and one clear line on stderr."""
    r = mw(*args, **kwargs)  # type: ignore[arg-type]
    assert r.code == 1, (r.out, r.err)
    assert r.err.startswith("mailwright: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    return r.err


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("template") / "mw"
    ok("init", "--data-dir", str(data), "--domain", "example.test")
    return data


@pytest.fixture
def cfg(template: Path, tmp_path: Path) -> Path:
    """A fresh initialised data directory (a copy of one ``init``); returns its config."""
    data = tmp_path / "mw"
    shutil.copytree(template, data)
    return data / "mailwright.toml"


def db_rows(cfg: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(cfg.parent / "mailwright.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- init ---------------------------------------------------------------------------


def test_init_writes_config_and_tls(tmp_path: Path) -> None:
    data = tmp_path / "new" / "dir"
    out = ok("init", "--data-dir", str(data), "--domain", "Mail.Example.TEST")
    config_file = data / "mailwright.toml"
    assert config_file.is_file()
    assert (data / "tls" / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in (data / "tls" / "key.pem").read_text()
    assert (data / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    assert "mail.example.test" in out and str(config_file) in out
    config = load_config(config_file, environ={})
    assert config.data_dir == str(data.resolve())
    assert config.hostname == "mx.mail.example.test"
    # A receiver on this host needs webhooks.allowed_networks: the file shows where.
    assert "[webhooks]" in config_file.read_text()
    assert config.webhooks.allowed_networks == ()
    assert ok("domain", "list", config=config_file) == "mail.example.test\n"
    assert ok("user", "list", config=config_file) == ""
    assert not (data / "demo-password.txt").exists()
    assert "password" not in out.lower()


def test_init_with_hostname(tmp_path: Path) -> None:
    ok("init", "--data-dir", str(tmp_path), "--hostname", "smtp.example.test")
    config = load_config(tmp_path / "mailwright.toml", environ={})
    assert config.hostname == "smtp.example.test"


def test_init_relative_data_dir(tmp_path: Path) -> None:
    ok("init", "--data-dir", "rel", cwd=tmp_path)
    assert (tmp_path / "rel" / "mailwright.toml").is_file()
    assert ok("check-config", config=tmp_path / "rel" / "mailwright.toml").endswith(": ok\n")


def test_init_demo_user_prints_a_working_password(tmp_path: Path) -> None:
    out = ok("init", "--data-dir", str(tmp_path), "--demo-user")
    line = next(x for x in out.splitlines() if x.startswith("Demo user:"))
    assert "demo@example.test" in line
    password = line.rsplit("password: ", 1)[1]
    assert len(password) >= 12
    ((stored,),) = db_rows(tmp_path / "mailwright.toml", "SELECT password_hash FROM accounts")
    assert str(stored).startswith("$argon2id$")
    assert PasswordHasher().verify(str(stored), password)
    saved = tmp_path / "demo-password.txt"
    assert saved.read_text() == f"demo@example.test {password}\n"
    assert saved.stat().st_mode & 0o777 == 0o600


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    ok("init", "--data-dir", str(tmp_path))
    config_file = tmp_path / "mailwright.toml"
    before = config_file.read_bytes(), (tmp_path / "tls" / "key.pem").read_bytes()
    err = fails("init", "--data-dir", str(tmp_path), "--domain", "other.test")
    assert "already exists" in err
    assert before == (config_file.read_bytes(), (tmp_path / "tls" / "key.pem").read_bytes())
    assert ok("domain", "list", config=config_file) == "example.test\n"


def test_init_bad_domain(tmp_path: Path) -> None:
    err = fails("init", "--data-dir", str(tmp_path), "--domain", "not a domain")
    assert "bad domain" in err
    assert not (tmp_path / "mailwright.toml").exists()


# -- configuration --------------------------------------------------------------------


def test_no_config_is_a_clear_error() -> None:
    err = fails("domain", "list")
    assert "--config" in err and "MAILWRIGHT_CONFIG" in err


def test_missing_config_file(tmp_path: Path) -> None:
    err = fails("domain", "list", config=tmp_path / "nope.toml")
    assert "config error" in err and "not found" in err and "nope.toml" in err


def test_config_from_environment(cfg: Path) -> None:
    env = {"MAILWRIGHT_CONFIG": str(cfg)}
    ok("domain", "add", "env.test", env=env)
    assert ok("domain", "list", env=env) == "env.test\nexample.test\n"
    # --config wins over the environment.
    err = fails("domain", "list", env=env, config=cfg.parent / "missing.toml")
    assert "missing.toml" in err


def test_check_config_ok(cfg: Path) -> None:
    assert ok("check-config", config=cfg) == f"{cfg}: ok\n"
    assert ok("check-config", env={"MAILWRIGHT_CONFIG": str(cfg)}) == f"{cfg}: ok\n"


def test_check_config_names_an_unknown_key(cfg: Path) -> None:
    cfg.write_text(cfg.read_text().replace("max_recipients", "max_mesage_size"))
    r = mw("check-config", config=cfg)
    assert r.code != 0
    assert "smtp.max_mesage_size" in r.err and "unknown key" in r.err
    assert "Traceback" not in r.err


def test_check_config_names_a_bad_value(cfg: Path) -> None:
    cfg.write_text(cfg.read_text().replace('bare_lf = "reject"', 'bare_lf = "sometimes"'))
    err = fails("check-config", config=cfg)
    assert "smtp.bare_lf" in err


def test_check_config_env_override_is_checked(cfg: Path) -> None:
    err = fails("check-config", config=cfg, env={"MAILWRIGHT_SMTP__MAX_RECIPIENTS": "0"})
    assert "smtp.max_recipients" in err


def test_check_config_invalid_toml(cfg: Path) -> None:
    cfg.write_text("data_dir = \n")
    assert "not valid TOML" in fails("check-config", config=cfg)


def test_check_config_missing_certificate(cfg: Path) -> None:
    (cfg.parent / "tls" / "cert.pem").unlink()
    assert "tls.cert" in fails("check-config", config=cfg)


def test_check_config_broken_certificate(cfg: Path) -> None:
    (cfg.parent / "tls" / "cert.pem").write_text("not a certificate\n")
    assert "tls.cert" in fails("check-config", config=cfg)


def test_usage_errors_exit_2(cfg: Path) -> None:
    assert mw("frobnicate", config=cfg).code == 2
    assert mw("user", config=cfg).code == 2
    assert mw("user", "add", config=cfg).code == 2


def test_version() -> None:
    r = mw("--version")
    assert r.code == 0 and r.out.startswith("mailwright ")


# -- domains --------------------------------------------------------------------------


def test_domain_commands(cfg: Path) -> None:
    assert ok("domain", "add", "Other.TEST", config=cfg).startswith("added domain other.test\n")
    assert ok("domain", "list", config=cfg) == "example.test\nother.test\n"
    assert ok("domain", "remove", "other.test", config=cfg) == "removed domain other.test\n"
    assert ok("domain", "list", config=cfg) == "example.test\n"


def test_domain_errors(cfg: Path) -> None:
    assert "already exists" in fails("domain", "add", "example.test", config=cfg)
    assert "no domain" in fails("domain", "remove", "nowhere.test", config=cfg)
    assert "bad domain" in fails("domain", "add", "bad domain", config=cfg)
    ok("user", "add", "alice@example.test", "--password-stdin", config=cfg, stdin="pw\n")
    err = fails("domain", "remove", "example.test", config=cfg)
    assert "user" in err and "example.test" in err
    assert ok("domain", "list", config=cfg) == "example.test\n"


# -- users ----------------------------------------------------------------------------


def _hash(cfg: Path, address: str) -> str:
    ((h,),) = db_rows(cfg, f"SELECT password_hash FROM accounts WHERE address='{address}'")
    return str(h)


def test_user_commands(cfg: Path) -> None:
    out = ok("user", "add", "Alice@Example.TEST", "--password-stdin", config=cfg, stdin="s3cret\n")
    assert out == "added user alice@example.test\n"
    ok("domain", "add", "other.test", config=cfg)
    ok("user", "add", "bob@other.test", "--password-stdin", config=cfg, stdin="pw\n")
    assert ok("user", "list", config=cfg) == "alice@example.test\nbob@other.test\n"
    assert ok("user", "list", "--domain", "other.test", config=cfg) == "bob@other.test\n"

    stored = _hash(cfg, "alice@example.test")
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, "s3cret")

    out = ok("user", "remove", "alice@example.test", config=cfg)
    assert "removed user alice@example.test" in out
    assert ok("user", "list", config=cfg) == "bob@other.test\n"


def test_user_passwd(cfg: Path) -> None:
    ok("user", "add", "alice@example.test", "--password-stdin", config=cfg, stdin="old\n")
    old = _hash(cfg, "alice@example.test")
    out = ok("user", "passwd", "alice@example.test", "--password-stdin", config=cfg, stdin="new\n")
    assert "alice@example.test" in out
    new = _hash(cfg, "alice@example.test")
    assert new != old and new.startswith("$argon2id$")
    assert PasswordHasher().verify(new, "new")
    assert "no user" in fails(
        "user", "passwd", "nobody@example.test", "--password-stdin", config=cfg, stdin="x\n"
    )


def test_user_errors(cfg: Path) -> None:
    add = ("user", "add", "alice@example.test", "--password-stdin")
    ok(*add, config=cfg, stdin="pw\n")
    assert "already exists" in fails(*add, config=cfg, stdin="pw\n")
    assert "bad address" in fails(
        "user", "add", "not-an-address", "--password-stdin", config=cfg, stdin="pw\n"
    )
    assert "bad address" in fails("user", "remove", "a@@b", config=cfg)
    assert "not a local domain" in fails(
        "user", "add", "x@nowhere.test", "--password-stdin", config=cfg, stdin="pw\n"
    )
    assert "no user" in fails("user", "remove", "nobody@example.test", config=cfg)
    assert "empty password" in fails(
        "user", "add", "bob@example.test", "--password-stdin", config=cfg, stdin="\n"
    )
    # Not a terminal and no --password-stdin: refuse rather than hang or take nothing.
    assert "--password-stdin" in fails("user", "add", "bob@example.test", config=cfg)
    assert ok("user", "list", config=cfg) == "alice@example.test\n"


def test_user_quota(cfg: Path) -> None:
    ok("user", "add", "alice@example.test", "--password-stdin", config=cfg, stdin="p\n")
    show = ("user", "quota", "alice@example.test")
    assert ok(*show, config=cfg) == "alice@example.test: no quota, 0 bytes used\n"
    out = ok(*show, "100M", config=cfg)
    assert out == "alice@example.test: quota 104857600 bytes (100M), 0 bytes used\n"
    assert db_rows(cfg, "SELECT quota_bytes FROM accounts") == [(100 * 1024 * 1024,)]
    assert "(2G)" in ok("user", "quota", "Alice@Example.TEST", "2g", config=cfg)
    assert ok(*show, "1500", config=cfg) == "alice@example.test: quota 1500 bytes, 0 bytes used\n"
    assert ok(*show, "512KiB", config=cfg).startswith("alice@example.test: quota 524288 bytes")
    assert ok(*show, "none", config=cfg) == "alice@example.test: no quota, 0 bytes used\n"
    assert db_rows(cfg, "SELECT quota_bytes FROM accounts") == [(None,)]
    for bad in ("lots", "1.5G", "-1", "10X"):
        assert "bad size" in fails(*show, bad, config=cfg)
    assert "no user" in fails("user", "quota", "nobody@example.test", "1M", config=cfg)
    assert "no user" in fails("user", "quota", "nobody@example.test", config=cfg)
    assert mw("user", "quota", config=cfg).code == 2


# -- aliases --------------------------------------------------------------------------


def test_alias_commands(cfg: Path) -> None:
    for user in ("alice", "bob"):
        ok("user", "add", f"{user}@example.test", "--password-stdin", config=cfg, stdin="p\n")
    out = ok("alias", "add", "team@example.test", "alice@example.test", "Bob@example.test",
             config=cfg)  # fmt: skip
    assert out == "added alias team@example.test -> alice@example.test, bob@example.test\n"
    ok("alias", "add", "@Example.TEST", "alice@example.test", config=cfg)
    assert ok("alias", "list", config=cfg) == (
        "@example.test -> alice@example.test\n"
        "team@example.test -> alice@example.test, bob@example.test\n"
    )
    assert ok("alias", "list", "--domain", "other.test", config=cfg) == ""
    ok("alias", "remove", "team@example.test", "bob@example.test", config=cfg)
    assert "team@example.test -> alice@example.test\n" in ok("alias", "list", config=cfg)
    ok("alias", "remove", "team@example.test", config=cfg)
    ok("alias", "remove", "@example.test", config=cfg)
    assert ok("alias", "list", config=cfg) == ""


def test_alias_errors(cfg: Path) -> None:
    ok("user", "add", "alice@example.test", "--password-stdin", config=cfg, stdin="p\n")
    err = fails("alias", "add", "alice@example.test", "bob@example.test", config=cfg)
    assert "is a user" in err
    err = fails("alias", "add", "x@example.test", "someone@remote.test", config=cfg)
    assert "not in a local domain" in err
    assert "bad address" in fails("alias", "add", "x@example.test", "nope", config=cfg)
    assert "not a local domain" in fails(
        "alias", "add", "x@nowhere.test", "alice@example.test", config=cfg
    )
    assert "no alias" in fails("alias", "remove", "ghost@example.test", config=cfg)
    ok("alias", "add", "x@example.test", "alice@example.test", config=cfg)
    assert "already exists" in fails(
        "alias", "add", "x@example.test", "alice@example.test", config=cfg
    )
    err = fails("user", "add", "x@example.test", "--password-stdin", config=cfg, stdin="p\n")
    assert "alias" in err


# -- mailboxes ------------------------------------------------------------------------


def test_mailbox_list(cfg: Path) -> None:
    ok("user", "add", "alice@example.test", "--password-stdin", config=cfg, stdin="p\n")
    out = ok("mailbox", "list", "alice@example.test", config=cfg, env={})
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert all(r[1:] == ["0", "0"] for r in rows)
    assert ok("mailbox", "list", "alice@example.test", env={"MAILWRIGHT_CONFIG": str(cfg)}) == out


def test_mailbox_list_unknown_user(cfg: Path) -> None:
    assert "no user nobody@example.test" in fails("mailbox", "list", "nobody@example.test",
                                                  config=cfg)  # fmt: skip
    assert "bad address" in fails("mailbox", "list", "nobody", config=cfg)


def test_every_command_through_the_environment(cfg: Path) -> None:
    env = {"MAILWRIGHT_CONFIG": str(cfg)}
    ok("domain", "add", "b.test", env=env)
    ok("user", "add", "u@b.test", "--password-stdin", env=env, stdin="p\n")
    ok("user", "passwd", "u@b.test", "--password-stdin", env=env, stdin="q\n")
    ok("alias", "add", "a@b.test", "u@b.test", env=env)
    assert ok("alias", "list", "--domain", "b.test", env=env) == "a@b.test -> u@b.test\n"
    assert ok("user", "list", "--domain", "b.test", env=env) == "u@b.test\n"
    assert "INBOX" in ok("mailbox", "list", "u@b.test", env=env)
    ok("alias", "remove", "a@b.test", env=env)
    ok("user", "remove", "u@b.test", env=env)
    ok("domain", "remove", "b.test", env=env)
    assert ok("domain", "list", env=env) == "example.test\n"


@pytest.mark.parametrize("leftover", ["tls/key.pem", "mailwright.db"])
def test_init_touches_nothing_in_a_used_data_dir(tmp_path: Path, leftover: str) -> None:
    # The config is gone but the rest of an installation is there: init must not
    # replace its TLS key (or anything else) and then fail half-way.
    ok("init", "--data-dir", str(tmp_path))
    (tmp_path / "mailwright.toml").unlink()
    for other in {"tls/key.pem", "mailwright.db"} - {leftover}:
        (tmp_path / other).unlink()
    cert = tmp_path / "tls" / "cert.pem"
    cert.unlink()
    before = (tmp_path / leftover).read_bytes()
    err = fails("init", "--data-dir", str(tmp_path))
    assert "already exists" in err and leftover.split("/")[-1] in err
    assert (tmp_path / leftover).read_bytes() == before
    assert not (tmp_path / "mailwright.toml").exists()
    assert not cert.exists()


def test_serve_with_a_bad_config_starts_nothing(cfg: Path) -> None:
    err = fails(
        "serve",
        config=cfg,
        env={"MAILWRIGHT_SMTP__MAX_LINE": "10", "MAILWRIGHT_SMTP__LISTEN": '["127.0.0.1:0"]'},
    )
    assert "smtp.max_line" in err
    err = fails("serve", config=cfg, env={"MAILWRIGHT_SMTP__BARE_LF": "sometimes"})
    assert "smtp.bare_lf" in err and "normalize" in err


def test_serve_with_a_broken_certificate_starts_nothing(cfg: Path) -> None:
    (cfg.parent / "tls" / "cert.pem").write_text("not a certificate\n")
    err = fails("serve", config=cfg, env={"MAILWRIGHT_SMTP__LISTEN": '["127.0.0.1:0"]'})
    assert "tls.cert" in err


def test_check_config_names_a_missing_key_file(cfg: Path) -> None:
    (cfg.parent / "tls" / "key.pem").unlink()
    err = fails("check-config", config=cfg)
    assert "tls.key" in err and "key.pem" in err
