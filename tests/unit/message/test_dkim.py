"""DKIM signing and key records: RFC 6376 (RSA-SHA256), RFC 8463 (Ed25519-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.message.dkim import (
    SIGNED_HEADERS,
    BodyHash,
    DkimError,
    DkimKey,
    MessageHasher,
    ascii_domain,
    dns_record,
    generate_key,
    sign,
    verify,
)

T = 1_700_000_000
MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: Lunch\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Shall we?\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return DkimKey("example.test", "mw202401r", "rsa-sha256", generate_key("rsa-sha256"))


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return DkimKey("example.test", "mw202401e", "ed25519-sha256", generate_key("ed25519-sha256"))


def zone(*keys: DkimKey) -> dict[str, str]:
    return {
        f"{k.selector}._domainkey.{k.domain}": dns_record(k.private_key, k.algorithm) for k in keys
    }


def fields(header: bytes) -> list[bytes]:
    """The DKIM-Signature fields of a ``sign`` result, one per signature, unfolded."""
    text = re.sub(rb"\r\n[ \t]", b" ", header)
    return [line for line in text.split(b"\r\n") if line]


def tags(field: bytes) -> dict[str, str]:
    name, _, value = field.partition(b":")
    assert name == b"DKIM-Signature"
    pairs = (p.split("=", 1) for p in value.decode().split(";") if p.strip())
    return {k.strip(): re.sub(r"\s+", "", v) for k, v in pairs}


@pytest.mark.parametrize("which", ["rsa", "ed25519"])
def test_sign_and_verify_round_trip(which: str, rsa_key: DkimKey, ed_key: DkimKey) -> None:
    key = rsa_key if which == "rsa" else ed_key
    header = sign(MESSAGE, [key], timestamp=T)
    (field,) = fields(header)
    t = tags(field)
    assert t["v"] == "1" and t["a"] == key.algorithm and t["c"] == "relaxed/relaxed"
    assert t["d"] == "example.test" and t["s"] == key.selector and t["t"] == str(T)
    assert verify(header + MESSAGE, zone(key).get)


def test_dual_signing_rsa_and_ed25519(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    # RFC 8463 §4: one signature per algorithm; each one stands on its own.
    header = sign(MESSAGE, [rsa_key, ed_key], timestamp=T)
    rsa_field, ed_field = fields(header)
    assert tags(rsa_field)["a"] == "rsa-sha256" and tags(ed_field)["a"] == "ed25519-sha256"
    assert tags(rsa_field)["bh"] == tags(ed_field)["bh"]  # one canonical body, one SHA-256
    assert verify(header + MESSAGE, zone(rsa_key, ed_key).get)
    assert verify(rsa_field + b"\r\n" + MESSAGE, zone(rsa_key).get)
    assert verify(ed_field + b"\r\n" + MESSAGE, zone(ed_key).get)
    # verify() wants every signature good: one key record missing fails the whole.
    assert not verify(header + MESSAGE, zone(rsa_key).get)


def test_no_keys_no_signature(rsa_key: DkimKey) -> None:
    assert sign(MESSAGE, []) == b""
    assert not verify(MESSAGE, zone(rsa_key).get)  # nothing signed: nothing verified


def test_a_changed_body_fails(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    signed = sign(MESSAGE, [rsa_key, ed_key], timestamp=T) + MESSAGE
    records = zone(rsa_key, ed_key)
    assert not verify(signed.replace(b"Shall we?", b"Shall we!"), records.get)
    assert not verify(signed + b"P.S. extra\r\n", records.get)


def test_a_changed_signed_header_fails(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    signed = sign(MESSAGE, [rsa_key, ed_key], timestamp=T) + MESSAGE
    records = zone(rsa_key, ed_key)
    assert not verify(signed.replace(b"Subject: Lunch", b"Subject: Dinner"), records.get)
    assert not verify(signed.replace(b"To: bob@", b"To: eve@"), records.get)
    # X-Mailer is not signed: relays may change it.
    assert verify(signed.replace(b"X-Mailer: test", b"X-Mailer: other"), records.get)


def test_a_second_from_fails(rsa_key: DkimKey) -> None:
    # RFC 6376 §8.15: From is signed once more than it occurs, so none can be added.
    signed = sign(MESSAGE, [rsa_key], timestamp=T) + MESSAGE
    assert verify(signed, zone(rsa_key).get)
    added = signed.replace(b"X-Mailer", b"From: mallory@evil.test\r\nX-Mailer")
    assert not verify(added, zone(rsa_key).get)


def test_relaxed_canonicalization_survives_refolding(rsa_key: DkimKey) -> None:
    signed = sign(MESSAGE, [rsa_key], timestamp=T) + MESSAGE
    refolded = signed.replace(b"Subject: Lunch", b"Subject:   Lunch  ").replace(
        b"Shall we?\r\n", b"Shall   we?  \r\n\r\n\r\n"
    )
    assert verify(refolded, zone(rsa_key).get)


def test_header_list_has_only_present_fields(rsa_key: DkimKey) -> None:
    message = (
        b"Received: from x by y; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"from: alice@example.test\r\n"
        b"To: a@remote.test\r\n"
        b"To: b@remote.test\r\n"
        b"CC: c@remote.test\r\n"
        b"List-Unsubscribe: <https://example.test/u>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"X-Other: 1\r\n"
        b"\r\n"
        b"hi\r\n"
    )
    header = sign(message, [rsa_key], timestamp=T)
    h = tags(fields(header)[0])["h"].split(":")
    assert h == ["from", "to", "to", "cc", "list-unsubscribe", "list-unsubscribe-post", "from"]
    assert set(h) <= set(SIGNED_HEADERS)
    assert verify(header + message, zone(rsa_key).get)


def test_signature_is_folded(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    header = sign(MESSAGE, [rsa_key, ed_key], timestamp=T)
    assert header.endswith(b"\r\n") and header.count(b"DKIM-Signature:") == 2
    lines = header.split(b"\r\n")[:-1]
    assert len(lines) > 4
    # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters; folds start with WSP.
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith((b" ", b"\t", b"DKIM-Signature:")) for line in lines)
    assert b"\n" not in header.replace(b"\r\n", b"")


def test_long_folded_header_values(rsa_key: DkimKey) -> None:
    recipients = ",\r\n ".join(f"user{i}@remote.test" for i in range(40))
    subject = "word " * 40
    message = (
        f"From: alice@example.test\r\nTo: {recipients}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()
    signed = sign(message, [rsa_key], timestamp=T) + message
    assert verify(signed, zone(rsa_key).get)
    # A relay that refolds the long Subject differently does not break the signature.
    refolded = signed.replace(b"word word ", b"word\r\n\tword ", 3)
    assert refolded != signed
    assert verify(refolded, zone(rsa_key).get)


def test_eight_bit_body_and_utf8_header(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    message = (
        "From: Jürgen <jürgen@example.test>\r\n"
        "To: bob@remote.test\r\n"
        "Subject: Grüße\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Schöne Grüße, 日本語\r\n"
    ).encode()
    signed = sign(message, [rsa_key, ed_key], timestamp=T) + message
    records = zone(rsa_key, ed_key)
    assert verify(signed, records.get)
    assert not verify(signed.replace("日本".encode(), "中国".encode()), records.get)


def test_unicode_signing_domain_is_an_a_label(ed_key: DkimKey) -> None:
    key = DkimKey("Bücher.Example", "mw202401e", "ed25519-sha256", ed_key.private_key)
    header = sign(MESSAGE, [key], timestamp=T)
    assert tags(fields(header)[0])["d"] == "xn--bcher-kva.example"
    records = {
        "mw202401e._domainkey.xn--bcher-kva.example": dns_record(key.private_key, key.algorithm)
    }
    assert verify(header + MESSAGE, records.get)


def test_sign_errors(rsa_key: DkimKey) -> None:
    with pytest.raises(DkimError, match="no From"):
        sign(b"To: bob@remote.test\r\n\r\nbody\r\n", [rsa_key])
    with pytest.raises(DkimError):
        sign(b"not a header line\r\n\r\nbody\r\n", [rsa_key])
    with pytest.raises(DkimError, match="RSA"):
        sign(MESSAGE, [DkimKey("example.test", "s", "rsa-sha256", b"garbage")])
    with pytest.raises(DkimError, match="Ed25519"):
        sign(MESSAGE, [DkimKey("example.test", "s", "ed25519-sha256", b"c2hvcnQ=")])
    with pytest.raises(DkimError, match="selector"):
        sign(MESSAGE, [DkimKey("example.test", "a;b", "rsa-sha256", rsa_key.private_key)])
    with pytest.raises(DkimError, match="domain"):
        sign(MESSAGE, [DkimKey("[127.0.0.1]", "s", "rsa-sha256", rsa_key.private_key)])


def test_verify_with_bad_or_missing_records(rsa_key: DkimKey) -> None:
    signed = sign(MESSAGE, [rsa_key], timestamp=T) + MESSAGE
    assert not verify(signed, lambda name: None)
    assert not verify(signed, lambda name: "v=DKIM1; k=rsa; p=not*base64")
    other = DkimKey("example.test", "mw202401r", "ed25519-sha256", generate_key("ed25519-sha256"))
    assert not verify(signed, zone(other).get)  # the wrong key under the right name
    assert not verify(b"DKIM-Signature: v=1; a=rsa-sha256\r\n" + MESSAGE, zone(rsa_key).get)


def test_generate_key_forms() -> None:
    pem = generate_key("rsa-sha256")
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    seed = base64.b64decode(generate_key("ed25519-sha256"), validate=True)
    assert len(seed) == 32
    assert generate_key("ed25519-sha256") != generate_key("ed25519-sha256")


def test_dns_record_rsa(rsa_key: DkimKey) -> None:
    # RFC 6376 §3.6.1: p= is the base64 DER public key.
    record = dns_record(rsa_key.private_key, "rsa-sha256")
    m = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/]+=*)", record)
    assert m is not None
    public = serialization.load_der_public_key(base64.b64decode(m[1]))
    private = serialization.load_pem_private_key(rsa_key.private_key, password=None)
    assert isinstance(public, rsa.RSAPublicKey) and isinstance(private, rsa.RSAPrivateKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert len(record) > 255  # hence the split into strings in the zone file


def test_dns_record_ed25519(ed_key: DkimKey) -> None:
    # RFC 8463 §4.2: p= is the raw 32-byte public key in base64.
    record = dns_record(ed_key.private_key, "ed25519-sha256")
    m = re.fullmatch(r"v=DKIM1; k=ed25519; p=([A-Za-z0-9+/]{43}=)", record)
    assert m is not None
    seed = base64.b64decode(ed_key.private_key)
    expected = (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert base64.b64decode(m[1]) == expected


def test_dns_record_errors(ed_key: DkimKey) -> None:
    with pytest.raises(DkimError):
        dns_record(b"garbage", "rsa-sha256")
    with pytest.raises(DkimError, match="not an RSA key"):
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        dns_record(pem, "rsa-sha256")
    with pytest.raises(DkimError, match="base64"):
        dns_record(b"***", "ed25519-sha256")
    with pytest.raises(DkimError, match="unknown"):
        dns_record(ed_key.private_key, "dsa-sha1")  # type: ignore[arg-type]
    with pytest.raises(DkimError, match="unknown"):
        generate_key("dsa-sha1")  # type: ignore[arg-type]


def test_private_key_stays_out_of_repr(ed_key: DkimKey) -> None:
    assert ed_key.private_key.decode() not in repr(ed_key)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Example.TEST", "example.test"),
        ("example.test.", "example.test"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_ascii_domain(given: str, expected: str) -> None:
    assert ascii_domain(given) == expected


@pytest.mark.parametrize("bad", ["", "localhost", "[127.0.0.1]", "../etc", "a/b.test", "a..b"])
def test_ascii_domain_refuses_what_is_not_a_host_name(bad: str) -> None:
    with pytest.raises(DkimError):
        ascii_domain(bad)


# -- the streaming body hash agrees with dkimpy's canonicalization -------------------------

_BODY_PIECES = st.lists(
    st.sampled_from([b"a", b"b c", b" ", b"\t", b"  \t ", b"\r\n", b"\r", b"\n", b"x\t\r\n"]),
    max_size=40,
)


@given(pieces=_BODY_PIECES, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_body_hash_matches_dkimpy_under_any_chunking(pieces: list[bytes], cuts: list[int]) -> None:
    from dkim.canonicalization import CanonicalizationPolicy

    body = b"".join(pieces)
    expected = base64.b64encode(
        hashlib.sha256(
            CanonicalizationPolicy.from_c_value(b"relaxed/relaxed").canonicalize_body(body)
        ).digest()
    )
    h = BodyHash()
    last = 0
    for cut in sorted(c for c in cuts if c <= len(body)):
        h.update(body[last:cut])
        last = cut
    h.update(body[last:])
    assert h.digest() == expected


def test_message_hasher_splits_header_and_body_in_pieces() -> None:
    message = b"From: a@example.test\r\nSubject: x\r\n\r\nbody  line \r\n\r\n\r\n"
    for size in (1, 2, 7, len(message)):
        h = MessageHasher(1000)
        for i in range(0, len(message), size):
            h.update(message[i : i + size])
        h.close()
        assert h.header == b"From: a@example.test\r\nSubject: x\r\n"
        expected = BodyHash()
        expected.update(b"body  line \r\n\r\n\r\n")
        assert h.body.digest() == expected.digest()
    h = MessageHasher(10)
    h.update(b"From: a@example.test\r\nSubject: too long for ten\r\n\r\nbody\r\n")
    h.close()
    assert h.header is None  # too big to sign
    h = MessageHasher(100)
    h.update(b"From: a@example.test")
    h.close()
    assert h.header == b"From: a@example.test\r\n"  # all header, no CRLF at the end


# -- the header hash: dkimpy verifies whatever header section was signed --------------------

_NAMES = st.sampled_from(
    [b"From", b"from", b"TO", b"Cc", b"Subject", b"Date", b"Message-ID", b"X-Other", b"Received"]
)
_VALUE_WORDS = st.lists(
    st.sampled_from([b"a", b"B c", b" ", b"\t", b"  \t ", b"\r\n ", b"\r\n\t", b"x;y=z", b":"]),
    max_size=12,
)
_FIELDS = st.lists(st.tuples(_NAMES, _VALUE_WORDS), min_size=1, max_size=10)


@settings(max_examples=50)  # each example makes and checks four signatures
@given(fields=_FIELDS, mbox=st.booleans())
def test_any_header_section_signed_verifies_with_dkimpy(
    rsa_key: DkimKey, ed_key: DkimKey, fields: list[tuple[bytes, list[bytes]]], mbox: bool
) -> None:
    header = b"From: alice@example.test\r\n" + b"".join(
        name + b":" + b"".join(words).lstrip(b"\r\n") + b"\r\n" for name, words in fields
    )
    message = (b"From alice Tue Nov 14 22:13:20 2023\r\n" if mbox else b"") + header + b"\r\nhi\r\n"
    signed = sign(message, [rsa_key, ed_key], timestamp=T)
    assert all(len(line) <= 78 for line in signed.split(b"\r\n"))
    assert verify(signed + message, zone(rsa_key, ed_key).get)
    # A signed field changed (its words, not its whitespace) fails.
    changed = message.replace(b"alice@example.test", b"mallory@example.test", 1)
    assert not verify(signed + changed, zone(rsa_key, ed_key).get)


def test_a_header_section_starting_with_a_folded_line_is_not_signed(rsa_key: DkimKey) -> None:
    with pytest.raises(DkimError, match="folded"):
        sign(b" folded\r\nFrom: a@example.test\r\n\r\nbody\r\n", [rsa_key])
