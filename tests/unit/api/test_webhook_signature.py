"""The webhook signature: what ``sign`` makes, ``verify`` accepts, and nothing else —
a changed body, another secret, an old or far-future timestamp, a malformed header."""

from __future__ import annotations

import hashlib
import hmac

from mailwright.api.webhooks import TOLERANCE, sign, verify

SECRET = "whsec_test-secret"
BODY = b'[{"id":"7","type":"accepted"}]'
T = 1_800_000_000


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    mac = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == f"v1={mac}"


def test_round_trip() -> None:
    signature = sign(SECRET, T, BODY)
    assert verify(SECRET, T, BODY, signature, now=T)
    # As a receiver has them: the timestamp header is text.
    assert verify(SECRET, str(T), BODY, signature, now=T + 10)


def test_a_tampered_body_is_refused() -> None:
    signature = sign(SECRET, T, BODY)
    assert not verify(SECRET, T, BODY.replace(b"accepted", b"bounced"), signature, now=T)
    assert not verify(SECRET, T, BODY + b" ", signature, now=T)


def test_another_secret_or_timestamp_is_refused() -> None:
    signature = sign(SECRET, T, BODY)
    assert not verify("whsec_other", T, BODY, signature, now=T)
    # The timestamp is signed: moving it (to pass the age check) breaks the signature.
    assert not verify(SECRET, T + 1, BODY, signature, now=T)


def test_an_old_or_future_timestamp_is_refused() -> None:
    signature = sign(SECRET, T, BODY)
    assert verify(SECRET, T, BODY, signature, now=T + TOLERANCE)
    assert not verify(SECRET, T, BODY, signature, now=T + TOLERANCE + 1)
    assert not verify(SECRET, T, BODY, signature, now=T - TOLERANCE - 1)
    assert verify(SECRET, T, BODY, signature, now=T + 50, tolerance=60)
    assert not verify(SECRET, T, BODY, signature, now=T + 61, tolerance=60)


def test_malformed_headers_are_refused() -> None:
    signature = sign(SECRET, T, BODY)
    # Full-width digits pass str.isdigit() and int(): a header is ASCII or nothing.
    for timestamp in ("", "abc", "-5", "1e9", "\uff11\uff18\uff10\uff10", "9" * 40):
        assert not verify(SECRET, timestamp, BODY, signature, now=T)
    for bad in ("", "v1=", signature[3:], signature.upper(), "v0=" + signature[3:], "v1=é"):
        assert not verify(SECRET, T, BODY, bad, now=T)


def test_any_listed_signature_may_match() -> None:
    # A receiver rotating its secret may get (or keep) several values.
    signature = sign(SECRET, T, BODY)
    assert verify(SECRET, T, BODY, f"{sign('old', T, BODY)}, {signature}", now=T)
    assert not verify(SECRET, T, BODY, f"{sign('old', T, BODY)},v1=00", now=T)
