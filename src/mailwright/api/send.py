"""Sending a message through the API: check the request, build the MIME message, and hand
it to the one pipeline (routing, DKIM, local filing and the queue, in one commit).

Invariants:
- nothing is stored unless every check passed; the message, its queue entries, its
  events and the API's record of it (tags, metadata, Idempotency-Key) are one commit, so
  a message the API reported exists after any crash, and a retried request with the same
  Idempotency-Key finds the message of the first instead of sending again;
- the sender must be an address of a local domain (and of the key's domain, for a key
  restricted to one): the API never relays for a foreign sender.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailwright.api.errors import ApiError
from mailwright.api.models import MessageIn, MessageOut, RecipientOut
from mailwright.api.quota import check_limits
from mailwright.api.suppression import LINK_SECRET, UNSUBSCRIBE_PATH, unsubscribe_token
from mailwright.api.templates import render_for_send
from mailwright.api.tracking import track
from mailwright.api.views import message_state
from mailwright.core.address import Address, AddressError
from mailwright.core.ids import new_queue_id
from mailwright.core.log import event as log_event
from mailwright.intake.pipeline import MessageRefused, Pipeline
from mailwright.intake.transaction import Transaction
from mailwright.message.compose import (
    Attachment,
    ComposeError,
    Draft,
    compose,
    parse_mailbox,
)
from mailwright.message.fixup import new_message_id
from mailwright.store.api import (
    Api,
    ApiKey,
    ApiSend,
    DeliveryResult,
    MailEvent,
    Queue,
    ScheduledSend,
    Suppression,
)
from mailwright.store.errors import DuplicateRequest, QuotaExceeded, StoreError

log = logging.getLogger("mailwright.api")

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_size: int
    max_recipients: int
    public_url: str = "http://localhost"  # where links in messages point, without the path


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or not value.isprintable():
        raise ApiError(
            400,
            "invalid_request",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
            "Idempotency-Key",
        )
    return value


def _address(text: str, field: str) -> tuple[str, Address]:
    """(the text as given, its parsed addr-spec); 422 naming ``field`` if it is not one."""
    try:
        _name, spec = parse_mailbox(text, field)
        return text, Address.parse(spec, utf8=True)
    except ComposeError as exc:
        raise ApiError(422, "invalid_address", f"{field}: {exc.message}", field) from None
    except AddressError as exc:
        raise ApiError(422, "invalid_address", f"{field}: {exc}", field) from None


def _attachments(msg: MessageIn) -> tuple[Attachment, ...]:
    out = []
    for i, a in enumerate(msg.attachments):
        try:
            content = base64.b64decode(a.content, validate=True)
        except (binascii.Error, ValueError):
            field = f"attachments.{i}.content"
            raise ApiError(422, "invalid_attachment", f"{field}: not base64", field) from None
        out.append(Attachment(a.filename, content, a.content_type, a.inline, a.content_id))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A send that passed every check, with its message built, ready for ``commit``; or
    (``earlier``) the answer an earlier request with the same Idempotency-Key got."""

    key: ApiKey
    msg: MessageIn
    sender: Address | None = None
    envelope: list[Address] = field(default_factory=list)
    queue_id: str = ""
    message_id: str = ""
    data: bytes = b""
    record: ApiSend = field(default_factory=lambda: ApiSend(0, ""))
    scheduled: str | None = None  # the queue id of a held send being sent now
    earlier: MessageOut | None = None


class Sender:
    """Turns a checked request into a stored message (one per call)."""

    def __init__(self, pipeline: Pipeline, api: Api, queue: Queue, limits: Limits) -> None:
        self._pipeline = pipeline
        self._api = api
        self._queue = queue
        self._limits = limits
        self._secret: bytes | None = None
        self._clock = time.time

    async def send(
        self,
        key: ApiKey,
        msg: MessageIn,
        *,
        idempotency_key: str | None = None,
        request_hash: str = "",
        scheduled: str | None = None,
    ) -> tuple[int, MessageOut]:
        """(HTTP status, what became of each recipient). 202: accepted now (or held for
        its ``send_at``); 200: the message an earlier request with the same
        Idempotency-Key sent. ``scheduled``: the queue id of a held send, sent now."""
        prepared = await self.prepare(
            key,
            msg,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            scheduled=scheduled,
        )
        return await self.commit(prepared)

    async def prepare(
        self,
        key: ApiKey,
        msg: MessageIn,
        *,
        idempotency_key: str | None = None,
        request_hash: str = "",
        scheduled: str | None = None,
    ) -> Prepared:
        """Every check a send makes before anything is stored (``ApiError`` for a refusal),
        and the message built: a caller with several messages (the SendGrid route) checks
        them all before it commits any."""
        if idempotency_key is not None and scheduled is None:
            earlier = await self._earlier(key, idempotency_key, request_hash)
            if earlier is not None:
                return Prepared(key, msg, earlier=earlier)
        _, sender = _address(msg.sender, "from")
        domain = sender.domain.lower()
        if key.sender_domain is not None and domain != key.sender_domain:
            raise ApiError(
                403,
                "forbidden_sender",
                f"this key may send only from {key.sender_domain}",
                "from",
            )
        route = await self._pipeline.router.route(sender)
        if not route.local_domain:
            raise ApiError(
                422, "foreign_sender", f"from: {domain} is not a domain of this server", "from"
            )
        envelope = self._recipients(msg)
        await self._check_deliverable(envelope)
        if scheduled is None:  # a held send was counted when it was asked for
            await check_limits(self._api, key, len(envelope))
        subject, text, html = msg.subject, msg.text, msg.html
        if msg.template_id is not None:
            if subject or text is not None or html is not None:
                raise ApiError(
                    422,
                    "invalid_message",
                    "template_id: a templated message takes no subject, text or html",
                    "template_id",
                )
            rendered = await render_for_send(self._api, key, msg.template_id, msg.variables)
            subject, text, html = rendered.subject, rendered.text, rendered.html
        queue_id = scheduled or new_queue_id()
        message_id = new_message_id(self._pipeline.hostname, queue_id)
        if html is not None and (msg.track_opens or msg.track_clicks):
            html = track(
                html,
                await self._link_secret(),
                self._limits.public_url,
                queue_id,
                # One copy of the html serves every recipient: only a message to one can
                # tell whose open or click it was.
                str(envelope[0]) if len(envelope) == 1 else "",
                opens=msg.track_opens,
                clicks=msg.track_clicks,
            )
        system: tuple[tuple[str, str], ...] = ()
        if msg.unsubscribe:
            if len(envelope) != 1:
                raise ApiError(
                    422,
                    "invalid_message",
                    "unsubscribe: an unsubscribe link needs a message to one recipient",
                    "unsubscribe",
                )
            token = unsubscribe_token(await self._link_secret(), queue_id, str(envelope[0]))
            # RFC 8058 §3.1: one-click needs both fields (and a DKIM signature over them,
            # which the pipeline makes: message.dkim signs both).
            system = (
                ("List-Unsubscribe", f"<{self._limits.public_url}{UNSUBSCRIBE_PATH}{token}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            )
        draft = Draft(
            sender=msg.sender,
            to=tuple(msg.to),
            cc=tuple(msg.cc),
            reply_to=tuple(msg.reply_to),
            subject=subject,
            text=text,
            html=html,
            attachments=_attachments(msg),
            headers=tuple(msg.headers.items()),
            system_headers=system,
            message_id=message_id,
        )
        try:
            data = compose(draft, hostname=self._pipeline.hostname, queue_id=queue_id)
        except ComposeError as exc:
            raise ApiError(422, "invalid_message", str(exc), exc.field) from None
        if len(data) > self._limits.max_message_size:
            raise ApiError(
                413,
                "too_large",
                f"the message is {len(data)} bytes; the limit is {self._limits.max_message_size}",
            )
        record = ApiSend(
            key_id=key.id,
            sender_domain=domain,
            idempotency_key=idempotency_key,
            fingerprint=request_hash,
            tags=tuple(dict.fromkeys(msg.tags)),
            metadata=dict(msg.metadata),
            recipients=len(envelope),
        )
        return Prepared(key, msg, sender, envelope, queue_id, message_id, data, record, scheduled)

    async def commit(self, p: Prepared) -> tuple[int, MessageOut]:
        """Store a prepared message (or hold it for its ``send_at``): the checks the store
        makes at the commit (a full mailbox, an outage) are the only refusals left."""
        if p.earlier is not None:
            return 200, p.earlier
        key, msg, queue_id, record = p.key, p.msg, p.queue_id, p.record
        if p.scheduled is None and msg.send_at is not None:
            due = msg.send_at.timestamp()
            if due > self._clock() + 1:
                return await self._hold(p, due)
        listed = await self._api.suppressed([str(a) for a in p.envelope])
        dropped = [a for a in p.envelope if str(a).lower() in listed]
        drops = [
            MailEvent(
                queue_id,
                "dropped",
                str(a),
                {"reason": f"suppressed ({listed[str(a).lower()].reason})"},
                p.message_id,
            )
            for a in dropped
        ]
        envelope = [a for a in p.envelope if str(a).lower() not in listed]
        if not envelope:
            # Nothing to store; the send and its "dropped" events are still recorded.
            try:
                await self._api.record_send(queue_id, record, drops)
            except DuplicateRequest:
                return await self._raced(key, record.idempotency_key, record.fingerprint, queue_id)
            return 202, MessageOut(
                id=queue_id,
                message_id=p.message_id,
                recipients=[_dropped(a, listed) for a in dropped],
            )
        try:
            tx, result, refused = await self._pipeline.inject(
                str(p.sender),
                [str(a) for a in envelope],
                p.data,
                relay=True,
                submission=True,
                source="HTTP",
                send=record,
                queue_id=queue_id,
                events=drops,
            )
        except DuplicateRequest:
            return await self._raced(key, record.idempotency_key, record.fingerprint, queue_id)
        except MessageRefused as exc:
            raise ApiError(422, "invalid_message", str(exc)) from None
        except QuotaExceeded:
            raise ApiError(
                422, "mailbox_full", "every recipient's mailbox is full; nothing was sent"
            ) from None
        except StoreError as exc:
            log_event(log, logging.ERROR, "api.store_failed", queue_id=queue_id, error=str(exc))
            raise ApiError(
                503, "unavailable", "the message could not be stored; try again"
            ) from None
        if not tx.recipients:
            raise ApiError(
                422,
                "no_recipients",
                "no recipient can receive this message: " + ", ".join(refused),
                "to",
            )
        await self._pipeline.local_reports(tx, result)
        log_event(
            log,
            logging.INFO,
            "api.sent",
            queue_id=queue_id,
            key=key.prefix,
            sender=str(p.sender),
            recipients=len(tx.recipients),
            queued=result.queued,
            refused=len(refused),
        )
        statuses = _statuses(tx, result, refused) + [_dropped(a, listed) for a in dropped]
        return 202, MessageOut(id=queue_id, message_id=tx.message_id, recipients=statuses)

    async def _check_deliverable(self, envelope: list[Address]) -> None:
        """The pipeline refuses unknown local users and sends to the rest: a message none
        of whose recipients can receive it is refused whole, before anything is stored."""
        refused = []
        for address in envelope:
            route = await self._pipeline.router.route(address)
            if route.known or not route.local_domain:
                return
            refused.append(str(address))
        raise ApiError(
            422,
            "no_recipients",
            "no recipient can receive this message: " + ", ".join(refused),
            "to",
        )

    async def _hold(self, p: Prepared, due: float) -> tuple[int, MessageOut]:
        """Keep a checked request until its ``send_at`` (``ScheduledSender`` sends it then,
        as its queue id, after the same checks: a template or the suppression list may have
        changed meanwhile)."""
        entry = ScheduledSend(
            queue_id=p.queue_id,
            key_id=p.key.id,
            sender_domain=p.record.sender_domain,
            due=due,
            request=p.msg.model_dump_json(by_alias=True, exclude={"send_at"}),
            idempotency_key=p.record.idempotency_key,
            fingerprint=p.record.fingerprint,
        )
        try:
            await self._api.schedule_send(entry)
        except DuplicateRequest:
            return await self._raced(
                p.key, p.record.idempotency_key, p.record.fingerprint, p.queue_id
            )
        log_event(
            log, logging.INFO, "api.scheduled", queue_id=p.queue_id, key=p.key.prefix, due=due
        )
        return 202, _held(entry, [str(a) for a in p.envelope])

    async def _raced(
        self, key: ApiKey, idempotency_key: str | None, request_hash: str, queue_id: str
    ) -> tuple[int, MessageOut]:
        """The same key and Idempotency-Key, committed by a request running alongside (or
        a held send that was sent already, by a process that died before settling it)."""
        sent = await self._api.get_send(queue_id)
        if sent is not None:
            return 200, await self._sent(sent)
        earlier = await self._earlier(key, idempotency_key or "", request_hash)
        if earlier is None:  # pragma: no cover - the commit that refused ours made it
            raise ApiError(409, "conflict", "a request with this key is in progress")
        return 200, earlier

    async def _link_secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self._api.secret(LINK_SECRET)
        return self._secret

    def _recipients(self, msg: MessageIn) -> list[Address]:
        """to, cc and bcc, each checked, each address once (a message to the same address
        twice is delivered once, as SMTP would)."""
        seen: dict[str, Address] = {}
        for name, values in (("to", msg.to), ("cc", msg.cc), ("bcc", msg.bcc)):
            for i, text in enumerate(values):
                _, address = _address(text, f"{name}.{i}")
                seen.setdefault(address.key, address)
        for i, text in enumerate(msg.reply_to):
            _address(text, f"reply_to.{i}")
        if not seen:
            raise ApiError(422, "no_recipients", "to: a message needs a recipient", "to")
        if len(seen) > self._limits.max_recipients:
            raise ApiError(
                422,
                "too_many_recipients",
                f"to: at most {self._limits.max_recipients} recipients in one message",
                "to",
            )
        return list(seen.values())

    async def _earlier(
        self, key: ApiKey, idempotency_key: str, request_hash: str
    ) -> MessageOut | None:
        sent = await self._api.find_send(key.id, idempotency_key)
        held = None if sent is not None else await self._api.find_scheduled(key.id, idempotency_key)
        found: ApiSend | ScheduledSend | None = sent or held
        if found is None:
            return None
        if found.fingerprint != request_hash:
            raise ApiError(
                422,
                "idempotency_mismatch",
                "this Idempotency-Key was used with a different request",
                "Idempotency-Key",
            )
        if held is not None:
            return _held(held, request_recipients(held))
        return await self._sent(found) if isinstance(found, ApiSend) else None

    async def _sent(self, sent: ApiSend) -> MessageOut:
        state = message_state(sent, await self._queue.events(sent.queue_id))
        return MessageOut(
            id=state.id,
            message_id=state.message_id,
            recipients=[RecipientOut(email=r.email, status=r.status) for r in state.recipients],
        )


def request_recipients(held: ScheduledSend) -> list[str]:
    """The recipients a held send's request names (as given)."""
    msg = MessageIn.model_validate_json(held.request)
    return list(dict.fromkeys([*msg.to, *msg.cc, *msg.bcc]))


def _held(entry: ScheduledSend, recipients: list[str]) -> MessageOut:
    # The Message-ID is made when the message is: it is not known yet.
    return MessageOut(
        id=entry.queue_id,
        message_id="",
        recipients=[
            RecipientOut(email=r, status="scheduled", reason=f"send_at {entry.due:.0f}")
            for r in recipients
        ],
    )


def _dropped(address: Address, listed: dict[str, Suppression]) -> RecipientOut:
    reason = listed[str(address).lower()].reason
    return RecipientOut(email=str(address), status="dropped", reason=f"suppressed ({reason})")


def _statuses(
    tx: Transaction, result: DeliveryResult, refused: Sequence[str]
) -> list[RecipientOut]:
    full = {(t.account_id, t.mailbox) for t in result.over_quota}
    out: list[RecipientOut] = []
    for r in tx.recipients:
        if r.remote is not None:
            out.append(RecipientOut(email=str(r.address), status="queued"))
        elif all((t.account_id, t.mailbox) in full for t in r.targets):
            out.append(RecipientOut(email=str(r.address), status="bounced", reason="mailbox full"))
        else:
            out.append(RecipientOut(email=str(r.address), status="delivered"))
    for text in refused:
        out.append(RecipientOut(email=text, status="rejected", reason="no such user here"))
    return out
