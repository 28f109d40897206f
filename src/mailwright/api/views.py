"""The event log as the API shows it.

The store records a message's arrival as one "received" row naming the local recipients
it was filed for (one row per message keeps the port-25 path fast); the API shows that row
as an "accepted" event and one "delivered" event per local recipient, so every recipient
has its own events whatever the route. Other types keep their store names; "deleted"
(an operator dropped the entry) shows as "dropped".
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mailwright.api.models import AttemptOut, EventOut, MessageState, RecipientState
from mailwright.store.api import ApiSend, MailEvent, ScheduledSend

# API type → the store types that can produce it.
STORE_TYPES: dict[str, tuple[str, ...]] = {
    "accepted": ("received",),
    "queued": ("queued",),
    "delivered": ("delivered", "received"),
    "deferred": ("deferred",),
    "delayed": ("delayed",),
    "bounced": ("bounced",),
    "expired": ("expired",),
    "dropped": ("deleted", "dropped"),
    "unsubscribed": ("unsubscribed",),
    "opened": ("opened",),
    "clicked": ("clicked",),
}
EVENT_TYPES = tuple(STORE_TYPES)
_RENAMED = {"received": "accepted", "deleted": "dropped"}
# What a recipient's last event says of it.
_STATUS = {
    "queued": "queued",
    "delivered": "delivered",
    "deferred": "deferred",
    "delayed": "deferred",
    "bounced": "bounced",
    "expired": "expired",
    "dropped": "dropped",
    "unsubscribed": "delivered",  # it was delivered; the recipient then opted out
    "opened": "delivered",  # engagement after delivery
    "clicked": "delivered",
}


def _detail(e: MailEvent) -> dict[str, str]:
    return {str(k): str(v) for k, v in e.detail.items()}


def expand(e: MailEvent) -> list[EventOut]:
    """One stored event as the API's events (several for an arrival with local
    recipients)."""
    kind = _RENAMED.get(e.type, e.type)
    detail = _detail(e)
    local = [a for a in detail.pop("delivered", "").split(",") if a] if e.type == "received" else []
    out = [
        EventOut(
            id=str(e.id),
            type=kind,
            message=e.queue_id,
            message_id=e.message_id,
            recipient=e.recipient or None,
            time=e.time,
            detail=detail,
        )
    ]
    for n, address in enumerate(local, 1):
        out.append(
            EventOut(
                id=f"{e.id}.{n}",
                type="delivered",
                message=e.queue_id,
                message_id=e.message_id,
                recipient=address,
                time=e.time,
                detail={"mailbox": "local"},
            )
        )
    return out


def message_state(sent: ApiSend, events: Sequence[MailEvent]) -> MessageState:
    """Each recipient's state (its last event) and history, in the order they arrived."""
    per: dict[str, list[EventOut]] = {}
    message_id = ""
    for e in events:
        if e.queue_id != sent.queue_id:
            continue
        message_id = message_id or e.message_id
        for out in expand(e):
            if out.recipient:
                per.setdefault(out.recipient, []).append(out)
    recipients = [
        RecipientState(
            email=address,
            status=_STATUS.get(history[-1].type, history[-1].type),
            events=[AttemptOut(type=h.type, time=h.time, detail=h.detail) for h in history],
        )
        for address, history in per.items()
    ]
    return MessageState(
        id=sent.queue_id,
        message_id=f"<{message_id}>" if message_id else "",
        created_at=sent.created_at,
        tags=list(sent.tags),
        metadata=dict(sent.metadata),
        recipients=recipients,
    )


def held_state(held: ScheduledSend, recipients: list[str]) -> MessageState:
    """A send held for its ``send_at``: every recipient "scheduled", no events yet."""
    request = json.loads(held.request)
    return MessageState(
        id=held.queue_id,
        message_id="",
        created_at=held.created_at,
        tags=list(request.get("tags", [])),
        metadata=dict(request.get("metadata", {})),
        recipients=[RecipientState(email=r, status="scheduled", events=[]) for r in recipients],
        send_at=held.due,
    )
