"""INTERNALDATE as FETCH writes it (RFC 3501 §9 date-time, always in UTC here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from mailwright.access.imap.fetch import date_time, utc


def test_internaldate_is_the_same_instant_in_utc() -> None:
    appended = datetime(2024, 1, 5, 20, 30, tzinfo=timezone(-timedelta(hours=7, minutes=30)))
    assert date_time(int(appended.timestamp())) == "06-Jan-2024 04:00:00 +0000"
    assert date_time(0) == "01-Jan-1970 00:00:00 +0000"
    assert date_time(-1) == "31-Dec-1969 23:59:59 +0000"


def test_dates_no_datetime_holds_are_clamped() -> None:
    # APPEND refuses them; one stored by other means must not fail a FETCH.
    assert utc(-(10**12)) == datetime(1, 1, 1, tzinfo=UTC)
    assert utc(10**12) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert date_time(10**12) == "31-Dec-9999 23:59:59 +0000"
