"""DKIM keys per domain and ``mailwright dns``, through the real command line.

RFC 6376 §3.6.2.2 (key records as TXT, strings joined), RFC 8463 (Ed25519 keys),
RFC 7208 (SPF), RFC 7489 (DMARC).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from mailwright.message.dkim import DkimError, sign, verify
from mailwright.store.dkimkeys import DkimKeyStore

TIMEOUT = 60
MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: Signed\r\n"
    b"Message-ID: <dns-1@example.test>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


@dataclass
class Result:
    code: int
    out: str
    err: str


def mw(*args: str, config: Path | None = None, stdin: str = "") -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_")}
    cmd = [sys.executable, "-m", "mailwright.cli.main"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.run(
        [*cmd, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(*args: str, config: Path | None = None, stdin: str = "") -> str:
    r = mw(*args, config=config, stdin=stdin)
    assert r.code == 0, r.err
    assert r.err == ""
    return r.out


def fails(*args: str, config: Path | None = None) -> str:
    r = mw(*args, config=config)
    assert r.code == 1, (r.out, r.err)
    assert r.err.startswith("mailwright: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    return r.err


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("template") / "mw"
    out = ok("init", "--data-dir", str(data), "--domain", "example.test")
    assert "mailwright dns example.test" in out
    return data


@pytest.fixture
def cfg(template: Path, tmp_path: Path) -> Path:
    data = tmp_path / "mw"
    shutil.copytree(template, data)
    return data / "mailwright.toml"


def key_files(data: Path, domain: str) -> list[Path]:
    return sorted((data / "dkim" / domain).iterdir())


def parse_zone(text: str, origin: str) -> dns.zone.Zone:
    # The output is records to add to a zone, not a whole zone: no SOA or NS of its own.
    return dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)


def txt(zone: dns.zone.Zone, name: str) -> list[list[bytes]]:
    """The TXT records at ``name``, each as its list of character-strings."""
    rdataset = zone.get_rdataset(name, dns.rdatatype.TXT)
    assert rdataset is not None, name
    assert rdataset.ttl == 3600 and rdataset.rdclass == dns.rdataclass.IN
    return [list(rdata.strings) for rdata in rdataset]


# -- keys on disk ---------------------------------------------------------------------


def test_init_and_domain_add_create_private_key_files(cfg: Path) -> None:
    data = cfg.parent
    key_name = re.compile(r"mw[0-9]{6}r\.rsa\.key|mw[0-9]{6}e\.ed25519\.key")
    assert len(key_files(data, "example.test")) == 2
    out = ok("domain", "add", "Other.TEST", config=cfg)
    assert out.startswith("added domain other.test\n")
    assert "mailwright dns other.test" in out
    files = key_files(data, "other.test")
    assert sorted(p.name.split(".", 1)[1] for p in files) == ["ed25519.key", "rsa.key"]
    for p in [*files, *key_files(data, "example.test")]:
        assert key_name.fullmatch(p.name), p
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in (data / "dkim", data / "dkim" / "other.test"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    keys = DkimKeyStore(data).keys("other.test")
    assert [k.algorithm for k in keys] == ["rsa-sha256", "ed25519-sha256"]
    assert {k.private_key for k in keys} == {p.read_bytes() for p in files}


def test_domain_remove_removes_keys_only_when_the_domain_goes(cfg: Path) -> None:
    data = cfg.parent
    ok("domain", "add", "other.test", config=cfg)
    ok("user", "add", "u@other.test", "--password-stdin", config=cfg, stdin="pw\n")
    assert "user" in fails("domain", "remove", "other.test", config=cfg)
    assert len(key_files(data, "other.test")) == 2  # refused: the keys stay
    ok("user", "remove", "u@other.test", config=cfg)
    assert ok("domain", "remove", "other.test", config=cfg) == "removed domain other.test\n"
    assert not (data / "dkim" / "other.test").exists()
    assert len(key_files(data, "example.test")) == 2


# -- mailwright dns -------------------------------------------------------------------


def test_dns_prints_a_zone_with_every_record(cfg: Path) -> None:
    out = ok("dns", "example.test", config=cfg)
    zone = parse_zone(out, "example.test.")
    comments = [line for line in out.splitlines() if line.startswith(";")]
    text = "\n".join(comments)
    assert "A and/or AAAA" in text and "PTR" in text and "mx.example.test." in text
    for word in ("MX", "SPF", "DKIM", "DMARC"):
        assert word in text

    mx = zone.get_rdataset("example.test.", dns.rdatatype.MX)
    assert mx is not None and mx.ttl == 3600
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mx.example.test.")]
    assert txt(zone, "example.test.") == [[b"v=spf1 mx -all"]]
    assert txt(zone, "_dmarc.example.test.") == [
        [b"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"]
    ]

    keys = DkimKeyStore(cfg.parent).keys("example.test")
    assert [k.algorithm for k in keys] == ["rsa-sha256", "ed25519-sha256"]
    records: dict[str, str] = {}
    for key in keys:
        name = f"{key.selector}._domainkey.example.test."
        (strings,) = txt(zone, name)
        assert all(len(s) <= 255 for s in strings)  # RFC 6376 §3.6.2.2
        records[name.rstrip(".")] = b"".join(strings).decode()
    rsa_record = records[f"{keys[0].selector}._domainkey.example.test"]
    assert rsa_record.startswith("v=DKIM1; k=rsa; p=")
    assert records[f"{keys[1].selector}._domainkey.example.test"].startswith(
        "v=DKIM1; k=ed25519; p="
    )
    assert len(txt(zone, f"{keys[0].selector}._domainkey.example.test.")[0]) == 2

    # The published records verify mail signed with the stored keys: checked by
    # dkimpy itself, each signature on its own, with the zone as its DNS.
    signed = sign(MESSAGE, keys) + MESSAGE

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        found = records.get(name.decode().rstrip("."))
        return None if found is None else found.encode()

    assert all(dkim.DKIM(signed).verify(idx=i, dnsfunc=dnsfunc) for i in range(len(keys)))
    assert verify(signed, records.get)


def test_dns_is_case_insensitive_and_creates_missing_keys(cfg: Path) -> None:
    # A domain that has no keys yet (added by an older version) gets them on first use.
    shutil.rmtree(cfg.parent / "dkim" / "example.test")
    out = ok("dns", "Example.TEST", config=cfg)
    zone = parse_zone(out, "example.test.")
    keys = DkimKeyStore(cfg.parent).keys("example.test")
    assert len(keys) == 2
    for key in keys:
        txt(zone, f"{key.selector}._domainkey.example.test.")
    assert ok("dns", "example.test", config=cfg) == out  # stable: the same keys again


def test_dns_uses_the_configured_hostname(tmp_path: Path) -> None:
    ok("init", "--data-dir", str(tmp_path), "--domain", "b.test", "--hostname", "mail.a.test")
    out = ok("dns", "b.test", config=tmp_path / "mailwright.toml")
    zone = parse_zone(out, "b.test.")
    mx = zone.get_rdataset("b.test.", dns.rdatatype.MX)
    assert mx is not None and [r.exchange for r in mx] == [dns.name.from_text("mail.a.test.")]


def test_dns_unknown_domain(cfg: Path) -> None:
    err = fails("dns", "nowhere.test", config=cfg)
    assert "no domain nowhere.test" in err
    assert not (cfg.parent / "dkim" / "nowhere.test").exists()
    assert "bad domain" in fails("dns", "not a domain", config=cfg)


# -- the key store, in process ----------------------------------------------------------


def test_key_store_create_keys_remove(tmp_path: Path) -> None:
    clock = [datetime(2024, 1, 31, 23, 30, tzinfo=UTC)]
    store = DkimKeyStore(tmp_path, now=lambda: clock[0])
    assert store.keys("example.test") == []
    created = store.create("Example.Test")
    assert [(k.domain, k.selector, k.algorithm) for k in created] == [
        ("example.test", "mw202401r", "rsa-sha256"),
        ("example.test", "mw202401e", "ed25519-sha256"),
    ]
    assert store.keys("EXAMPLE.test") == created
    clock[0] = datetime(2024, 2, 1, tzinfo=UTC)
    assert store.create("example.test") == created  # existing keys are kept as they are

    # A newer selector (a rotation) wins; files that are not keys are ignored.
    (tmp_path / "dkim" / "example.test" / "mw202403e.ed25519.key").write_bytes(b"newer")
    (tmp_path / "dkim" / "example.test" / "notes.txt").write_text("x")
    (tmp_path / "dkim" / "example.test" / "mw202409r.ed25519.key").write_bytes(b"mislabelled")
    newest = store.keys("example.test")
    assert [k.selector for k in newest] == ["mw202401r", "mw202403e"]
    assert newest[1].private_key == b"newer"

    store.remove("example.test")
    assert store.keys("example.test") == []
    store.remove("example.test")  # nothing left: nothing to do


def test_key_store_fills_in_a_missing_algorithm(tmp_path: Path) -> None:
    store = DkimKeyStore(tmp_path, now=lambda: datetime(2024, 5, 1, tzinfo=UTC))
    rsa_key, ed_key = store.create("example.test")
    (tmp_path / "dkim" / "example.test" / "mw202405e.ed25519.key").unlink()
    again = store.create("example.test")
    assert again[0] == rsa_key and again[1].private_key != ed_key.private_key


def test_key_store_unicode_domain_and_bad_names(tmp_path: Path) -> None:
    store = DkimKeyStore(tmp_path)
    keys = store.create("bücher.example")
    assert {k.domain for k in keys} == {"xn--bcher-kva.example"}
    assert (tmp_path / "dkim" / "xn--bcher-kva.example").is_dir()
    assert store.keys("xn--bcher-kva.example") == keys
    for bad in ("../../etc", "a/b.test", "[127.0.0.1]", "localhost"):
        with pytest.raises(DkimError):
            store.create(bad)
    assert sorted(p.name for p in (tmp_path / "dkim").iterdir()) == ["xn--bcher-kva.example"]
