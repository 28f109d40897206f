"""Per-key sending limits: a daily quota of recipients (the UTC day) and a rate of
messages per second, answered with 429 and Retry-After.

Both are counted from the store's record of sends (``Api.usage``), so every worker
process (and node) sees the same counts. The check reads before the send commits: requests
racing each other may pass the limit by the number running at once, never by more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.api.errors import ApiError
from mailwright.store.api import Api, ApiKey

DAY = 86400


@dataclass(frozen=True, slots=True)
class Usage:
    day_start: float  # Unix seconds: the start of this UTC day
    messages: int  # sent today
    recipients: int

    @property
    def resets_at(self) -> float:
        return self.day_start + DAY


def day_start(now: float) -> float:
    return math.floor(now / DAY) * DAY


async def usage(api: Api, key: ApiKey, now: float) -> Usage:
    start = day_start(now)
    messages, recipients = await api.usage(key.id, start)
    return Usage(start, messages, recipients)


async def check_limits(
    api: Api, key: ApiKey, recipients: int, clock: Callable[[], float] = time.time
) -> None:
    """429 if this send of ``recipients`` would pass the key's rate or daily quota."""
    if key.daily_quota is None and key.rate_limit is None:
        return
    now = clock()
    if key.rate_limit is not None:
        recent, _ = await api.usage(key.id, now - 1.0)
        if recent >= key.rate_limit:
            raise ApiError(
                429,
                "rate_limited",
                f"this key sends at most {key.rate_limit} messages a second",
                headers={"Retry-After": "1"},
            )
    if key.daily_quota is not None:
        today = await usage(api, key, now)
        if today.recipients + recipients > key.daily_quota:
            wait = max(1, math.ceil(today.resets_at - now))
            raise ApiError(
                429,
                "quota_exceeded",
                f"this key's daily quota is {key.daily_quota} recipients; "
                f"{today.recipients} used today (UTC)",
                headers={"Retry-After": str(wait)},
            )
