"""build_dsn / write_dsn (RFC 3464, RFC 3461 §4.3 RET, RFC 6533 for SMTPUTF8), checked by
parsing the output with the stdlib email parser; xtext (RFC 3461 §4)."""

from __future__ import annotations

import email
import email.message
import io
import quopri
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwright.message import dsn
from mailwright.message.dsn import (
    ENVELOPE_SENDER,
    DeliveryReport,
    RecipientStatus,
    build_dsn,
    write_dsn,
    xtext_decode,
    xtext_encode,
)

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
ORIGINAL = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: lunch\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\n"
    b"Shall we?\r\n"
    b".a line with a dot\r\n"
)
FAILED = RecipientStatus(
    "bob@remote.test",
    "failed",
    "5.1.1",
    original_recipient="rfc822;Bob@Remote.test",
    remote_mta="mx.remote.test",
    diagnostic="550 5.1.1 <bob@remote.test>: user unknown",
    last_attempt=WHEN,
)
DELAYED = RecipientStatus(
    "carol@remote.test",
    "delayed",
    "4.4.1",
    remote_mta="mx2.remote.test",
    diagnostic="connect to mx2.remote.test[192.0.2.7]:25: Connection refused",
    diagnostic_type="x-mailwright",
    last_attempt=WHEN,
    will_retry_until=WHEN + timedelta(days=5),
)


def report(*recipients: RecipientStatus, **kwargs: object) -> DeliveryReport:
    defaults: dict[str, object] = {
        "envid": "Q-4711",
        "arrival_date": WHEN - timedelta(hours=4),
    }
    defaults.update(kwargs)
    return DeliveryReport(
        "mx.example.org",
        "alice@example.org",
        recipients or (FAILED,),
        **defaults,  # type: ignore[arg-type]
    )


def parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data)


def parse_utf8(data: bytes) -> email.message.Message:
    return email.message_from_string(data.decode("utf-8"))


def parts(msg: email.message.Message) -> list[email.message.Message]:
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return payload


def status_blocks(part: email.message.Message) -> list[email.message.Message]:
    """The per-message block and the per-recipient blocks of a delivery-status part."""
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        assert isinstance(blocks, list)
        return blocks
    # message/global-delivery-status: the stdlib parser takes it for an attached message,
    # whose header is the per-message block and whose body holds the recipient blocks.
    payload = part.get_payload()
    assert isinstance(payload, list)
    first = payload[0]
    body = first.get_payload()
    assert isinstance(body, str)
    rest = [email.message_from_string(b) for b in body.strip("\r\n").split("\r\n\r\n")]
    return [first, *rest]


def value(block: email.message.Message, name: str) -> str:
    """A field's value unfolded (RFC 5322 §2.2.3)."""
    return " ".join(str(block[name]).split())


def assert_lines_ok(data: bytes) -> None:
    assert b"\r\n" in data
    for line in data.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line
        assert len(line) <= 998  # RFC 5322 §2.1.1


# -- the whole notification ------------------------------------------------------------------


def test_failure_report_with_the_full_message() -> None:
    data = build_dsn(report(FAILED), ORIGINAL, date=WHEN, message_id="dsn1@mx.example.org")
    assert_lines_ok(data)
    assert data.isascii()
    msg = parse(data)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    assert msg["To"] == "<alice@example.org>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"] == "Tue, 04 Mar 2025 05:06:07 +0000"
    assert msg["Message-ID"] == "<dsn1@mx.example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert "Content-Transfer-Encoding" not in msg  # 7-bit throughout
    assert not msg.defects

    human, status, returned = parts(msg)
    assert human.get_content_type() == "text/plain"
    assert human.get_content_charset() == "us-ascii"
    text = human.get_payload()
    assert isinstance(text, str)
    assert "could not be delivered" in text
    assert "<bob@remote.test>: failed (5.1.1)" in text
    assert "550 5.1.1 <bob@remote.test>: user unknown" in text

    assert status.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = status_blocks(status)
    assert dict(per_message.items()) == {
        "Reporting-MTA": "dns; mx.example.org",
        "Original-Envelope-Id": "Q-4711",
        "Arrival-Date": "Tue, 04 Mar 2025 01:06:07 +0000",
    }
    assert dict(per_rcpt.items()) == {
        "Original-Recipient": "rfc822; Bob@Remote.test",
        "Final-Recipient": "rfc822; bob@remote.test",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx.remote.test",
        "Diagnostic-Code": "smtp; 550 5.1.1 <bob@remote.test>: user unknown",
        "Last-Attempt-Date": "Tue, 04 Mar 2025 05:06:07 +0000",
    }

    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()
    assert isinstance(inner, list)
    assert inner[0]["Subject"] == "lunch"
    assert inner[0].get_payload() == "Shall we?\r\n.a line with a dot\r\n"
    # The returned message is byte for byte what was sent.
    assert ORIGINAL in data


def test_delay_report_returns_the_header_and_says_until_when() -> None:
    data = build_dsn(report(DELAYED), ORIGINAL, date=WHEN)
    msg = parse(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    human, status, returned = parts(msg)
    text = human.get_payload()
    assert isinstance(text, str)
    assert "not been delivered yet" in text
    assert "will retry until: Sun, 09 Mar 2025 05:06:07 +0000" in text
    block = status_blocks(status)[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert value(block, "Diagnostic-Code") == (
        "x-mailwright; connect to mx2.remote.test[192.0.2.7]:25: Connection refused"
    )
    assert block["Will-Retry-Until"] == "Sun, 09 Mar 2025 05:06:07 +0000"
    assert "Original-Recipient" not in block
    # No RET given and nothing failed: the header only (RFC 3461 §4.3 leaves it to us).
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned.get_payload() == ORIGINAL.split(b"\r\n\r\n")[0].decode() + "\r\n"


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_success_reports(action: str) -> None:
    ok = RecipientStatus("bob@remote.test", action, "2.0.0", remote_mta="mx.remote.test")  # type: ignore[arg-type]
    msg = parse(build_dsn(report(ok), ORIGINAL, date=WHEN))
    assert msg["Subject"] == "Successful Mail Delivery Report"
    human, status, returned = parts(msg)
    block = status_blocks(status)[1]
    assert block["Action"] == action
    assert block["Status"] == "2.0.0"
    assert "Diagnostic-Code" not in block
    assert returned.get_content_type() == "text/rfc822-headers"
    assert dsn._EXPLAIN[action].split()[0] in str(human.get_payload())


def test_several_recipients_one_block_each_in_order() -> None:
    msg = parse(build_dsn(report(FAILED, DELAYED), ORIGINAL, date=WHEN))
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"  # failure wins
    blocks = status_blocks(parts(msg)[1])
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@remote.test",
        "rfc822; carol@remote.test",
    ]


@pytest.mark.parametrize(
    ("ret", "actions", "expected"),
    [
        ("FULL", ("delayed",), "message/rfc822"),
        ("HDRS", ("failed",), "text/rfc822-headers"),
        (None, ("failed",), "message/rfc822"),
        (None, ("delivered",), "text/rfc822-headers"),
    ],
)
def test_ret_chooses_what_is_returned(
    ret: str | None, actions: tuple[str, ...], expected: str
) -> None:
    recipients = [
        RecipientStatus(f"r{i}@remote.test", a, "5.0.0" if a == "failed" else "2.0.0")  # type: ignore[arg-type]
        for i, a in enumerate(actions)
    ]
    if actions == ("delayed",):
        recipients = [DELAYED]
    msg = parse(build_dsn(report(*recipients, ret=ret), ORIGINAL))
    assert parts(msg)[2].get_content_type() == expected


def test_no_original_means_two_parts() -> None:
    msg = parse(build_dsn(report(FAILED), None))
    assert [p.get_content_type() for p in parts(msg)] == ["text/plain", "message/delivery-status"]
    assert "not available" in str(parts(msg)[0].get_payload())
    msg = parse(build_dsn(report(FAILED), b""))
    assert len(parts(msg)) == 2


def test_original_from_a_file_with_bare_lf_lines() -> None:
    lf = ORIGINAL.replace(b"\r\n", b"\n")
    out = io.BytesIO()
    write_dsn(out, report(FAILED, ret="FULL"), io.BytesIO(lf), date=WHEN)
    data = out.getvalue()
    assert_lines_ok(data)
    assert ORIGINAL in data  # returned with CRLF line ends
    hdrs = build_dsn(report(FAILED, ret="HDRS"), io.BytesIO(lf))
    returned = parts(parse(hdrs))[2].get_payload()
    assert returned == "From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\n" + (
        "Subject: lunch\r\nMessage-ID: <m1@example.org>\r\n"
    )


def test_a_message_without_body_is_all_header() -> None:
    only = b"Subject: x\r\nFrom: a@b.test"
    msg = parse(build_dsn(report(FAILED, ret="HDRS"), only))
    assert parts(msg)[2].get_payload() == "Subject: x\r\nFrom: a@b.test\r\n"


def test_too_large_is_returned_as_header_only() -> None:
    big = ORIGINAL + b"x" * 5000 + b"\r\n"
    msg = parse(build_dsn(report(FAILED, ret="FULL", max_full_size=1000), big))
    human, _, returned = parts(msg)
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "too large" in str(human.get_payload())


def test_envelope_sender_of_a_dsn_is_null() -> None:
    assert ENVELOPE_SENDER == ""
    with pytest.raises(ValueError, match="null sender"):
        DeliveryReport("mx.example.org", "", (FAILED,))


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        RecipientStatus("a@b.test", "failed", "550")
    with pytest.raises(ValueError, match="action"):
        RecipientStatus("a@b.test", "bounced", "5.0.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        DeliveryReport("mx.example.org", "a@b.test", ())


def test_naive_and_other_zone_dates() -> None:
    naive = RecipientStatus("a@b.test", "failed", "5.0.0", last_attempt=datetime(2025, 1, 1))
    zoned = RecipientStatus(
        "c@d.test",
        "failed",
        "5.0.0",
        last_attempt=datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    )
    blocks = status_blocks(parts(parse(build_dsn(report(naive, zoned), None)))[1])
    assert blocks[1]["Last-Attempt-Date"] == "Wed, 01 Jan 2025 00:00:00 +0000"
    assert blocks[2]["Last-Attempt-Date"] == "Wed, 01 Jan 2025 12:00:00 +0200"


def test_boundary_never_occurs_in_the_returned_message(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = iter(["=_taken", "=_free"])
    monkeypatch.setattr(dsn, "_new_boundary", lambda: next(chosen))
    original = ORIGINAL + b"--=_taken\r\n"
    msg = parse(build_dsn(report(FAILED, ret="FULL"), original))
    assert msg.get_boundary() == "=_free"
    assert len(parts(msg)) == 3


# -- 8-bit content -------------------------------------------------------------------------

EIGHT_BIT_BODY = ORIGINAL.replace(b"Shall we?", "Schöne Grüße".encode())
UTF8_HEADER = EIGHT_BIT_BODY.replace(b"Subject: lunch", "Subject: Grüße".encode())


def test_8bit_body_in_a_7bit_dsn_returns_the_header() -> None:
    data = build_dsn(report(FAILED, ret="FULL"), EIGHT_BIT_BODY)
    assert data.isascii()
    human, _, returned = parts(parse(data))
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "8-bit" in str(human.get_payload())


def test_8bit_body_returned_whole_when_the_dsn_may_be_8bit() -> None:
    data = build_dsn(report(FAILED, ret="FULL", eight_bit_ok=True), EIGHT_BIT_BODY)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    returned = parts(msg)[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert EIGHT_BIT_BODY in data


def test_8bit_header_without_smtputf8_is_quoted_printable() -> None:
    data = build_dsn(report(FAILED, ret="FULL"), UTF8_HEADER)
    assert data.isascii()
    returned = parts(parse(data))[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Transfer-Encoding"] == "quoted-printable"
    raw = returned.get_payload()
    assert isinstance(raw, str)
    header = UTF8_HEADER.split(b"\r\n\r\n")[0] + b"\r\n"
    assert quopri.decodestring(raw.encode()) == header


def test_smtputf8_message_uses_the_global_types() -> None:
    rcpt = RecipientStatus(
        "jörg@bücher.test",
        "failed",
        "5.1.1",
        original_recipient="utf-8;jörg+x@bücher.test",
        diagnostic="550 5.1.1 unbekannter Empfänger ü",
    )
    data = build_dsn(report(rcpt, ret="FULL", smtputf8=True), UTF8_HEADER)
    msg = parse_utf8(data)
    assert msg.get_param("report-type") == "global-delivery-status"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    human, status, returned = parts(msg)
    assert human.get_content_charset() == "utf-8"
    assert "<jörg@bücher.test>: failed" in data.decode()
    assert status.get_content_type() == "message/global-delivery-status"
    block = status_blocks(status)[1]
    # RFC 6533 §3: utf-8-addr-unitext, with "+", "=" and "\" as \x{..}.
    assert block["Final-Recipient"] == "utf-8; jörg@bücher.test"
    assert block["Original-Recipient"] == "utf-8; jörg\\x{2B}x@bücher.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unbekannter Empfänger ü"
    assert returned.get_content_type() == "message/global"
    assert UTF8_HEADER in data


def test_smtputf8_header_only_is_global_headers() -> None:
    data = build_dsn(report(DELAYED, smtputf8=True), UTF8_HEADER)
    returned = parts(parse_utf8(data))[2]
    assert returned.get_content_type() == "message/global-headers"
    assert returned["Content-Transfer-Encoding"] == "8bit"


def test_utf8_address_in_a_7bit_dsn_is_xtext_like() -> None:
    rcpt = RecipientStatus("jörg@example.test", "failed", "5.1.1")
    data = build_dsn(report(rcpt), None)
    assert data.isascii()
    block = status_blocks(parts(parse(data))[1])[1]
    assert block["Final-Recipient"] == "utf-8; j\\x{F6}rg@example.test"


def test_non_ascii_remote_text_in_a_7bit_dsn_is_replaced() -> None:
    rcpt = RecipientStatus("a@b.test", "failed", "5.0.0", diagnostic="550 nö \udcff way")
    data = build_dsn(report(rcpt), None)
    assert data.isascii()
    block = status_blocks(parts(parse(data))[1])[1]
    assert block["Diagnostic-Code"] == "smtp; 550 n? way"  # a surrogate is a control


# -- what comes from the network cannot break the structure ----------------------------------


def test_crlf_in_remote_values_cannot_inject_fields_or_parts() -> None:
    evil = RecipientStatus(
        "bob@remote.test\r\nBcc: eve@evil.test",
        "failed",
        "5.0.0",
        remote_mta="mx.remote.test\r\nX-Evil: 1",
        diagnostic="550 no\r\n\r\nX-Injected: yes\r\n--BOUND--\r\n\x00\x1b[31m",
    )
    data = build_dsn(
        report(evil, envid="id\r\nX-Env: 1"),
        ORIGINAL,
        boundary="BOUND",
        message_id="x\r\nBcc: eve@evil.test",
    )
    assert_lines_ok(data)
    delimiters = [line for line in data.split(b"\r\n") if line.startswith(b"--BOUND")]
    assert delimiters == [b"--BOUND"] * 3 + [b"--BOUND--"]  # nothing added
    msg = parse(data)
    assert "Bcc" not in msg and not msg.defects
    per_message, block = status_blocks(parts(msg)[1])
    assert set(block.keys()) == {
        "Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code"
    }  # fmt: skip
    assert value(block, "Diagnostic-Code") == "smtp; 550 no X-Injected: yes --BOUND-- [31m"
    assert block["Remote-MTA"] == "dns; mx.remote.testX-Evil:1"
    assert per_message["Original-Envelope-Id"] == "idX-Env:1"


def test_long_diagnostic_is_folded_and_bounded() -> None:
    text = "550 " + " ".join(["word"] * 2000) + " " + "x" * 5000
    rcpt = RecipientStatus("a@b.test", "failed", "5.0.0", diagnostic=text)
    data = build_dsn(report(rcpt), None)
    assert_lines_ok(data)
    block = status_blocks(parts(parse(data))[1])[1]
    value = " ".join(str(block["Diagnostic-Code"]).split())
    assert value.startswith("smtp; 550 word word")
    assert len(value) <= 2100


SAFE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SAFE
@given(
    reply=st.text(),
    host=st.text(max_size=100),
    envid=st.text(max_size=100),
    utf8=st.booleans(),
    ret=st.sampled_from(["FULL", "HDRS", None]),
)
def test_any_remote_text_keeps_the_mime_structure(
    reply: str, host: str, envid: str, utf8: bool, ret: str | None
) -> None:
    rcpt = RecipientStatus(
        "bob@remote.test", "failed", "5.1.1", remote_mta=host or None, diagnostic=reply or None
    )
    data = build_dsn(report(rcpt, FAILED, envid=envid or None, smtputf8=utf8, ret=ret), ORIGINAL)
    assert_lines_ok(data)
    if not utf8:
        assert data.isascii()
    msg = parse_utf8(data)
    assert not msg.defects
    assert msg.get_content_type() == "multipart/report"
    human, status, returned = parts(msg)
    assert human.get_content_type() == "text/plain"
    assert returned.get_content_type() in ("message/rfc822", "text/rfc822-headers")
    blocks = status_blocks(status)
    assert len(blocks) == 3
    assert blocks[0]["Reporting-MTA"] == "dns; mx.example.org"
    assert blocks[1]["Final-Recipient"] == "rfc822; bob@remote.test"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
    expected = dsn._field(reply, utf8)
    if expected:
        got = " ".join(str(blocks[1]["Diagnostic-Code"]).split())
        assert got.startswith("smtp;")
        assert len(got) <= len("smtp; ") + 2000
    else:
        assert "Diagnostic-Code" not in blocks[1]
    assert blocks[2]["Final-Recipient"] == "rfc822; bob@remote.test"
    assert blocks[2]["Diagnostic-Code"] == "smtp; " + FAILED.diagnostic


# -- xtext --------------------------------------------------------------------------------


def test_xtext_examples() -> None:
    assert xtext_encode("rfc822;bob+tag=x@remote.test") == "rfc822;bob+2Btag+3Dx@remote.test"
    assert xtext_encode("a b\x01") == "a+20b+01"
    assert xtext_encode("jö") == "j+C3+B6"
    assert xtext_decode("rfc822;bob+2Btag+3Dx@remote.test") == "rfc822;bob+tag=x@remote.test"
    assert xtext_decode("j+C3+B6") == "jö"


@pytest.mark.parametrize("bad", ["a+2", "a+zz", "a+2b", "a=b", "a b", "é"])
def test_xtext_decode_refuses_non_xtext(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


@SAFE
@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii() and " " not in encoded
    expected = text.encode("utf-8", "replace").decode("utf-8", "replace")
    assert xtext_decode(encoded) == expected
