"""Open and click tracking, opt-in per message (``track_opens``, ``track_clicks``).

A tracked message's HTML gets its http(s) links pointed at ``/v1/t/c/<token>`` and a
1x1 image from ``/v1/t/o/<token>`` before ``</body>``; fetching them records a "clicked"
or "opened" event of the message. The text part is never changed.

Invariants:
- a token is signed (``api.links``) and names the message, the recipient and, for a
  click, the URL: the click route redirects only to a URL a message of ours was sent with,
  and only to http or https (checked when the link is made and again when it is read), so
  it is never an open redirect; a bad click token is a 404, never a redirect;
- the pixel always answers the image, whatever its token: an error image would show in
  someone's mail. A bad token records nothing;
- rewriting splices new href values into the document as it came and changes nothing
  else: the HTML is never re-serialized, so what the sender wrote is what is sent.

An open of a message to several recipients cannot be told apart (one copy of the HTML
serves them all), so it is recorded without a recipient; so is a click. Opens are a hint,
not a fact: mail clients that block images never open, and proxies that prefetch them
open without a reader, as link scanners click.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from mailwright.api.errors import ApiError
from mailwright.api.links import make_token, read_token
from mailwright.api.suppression import link_secret
from mailwright.core.log import event as log_event
from mailwright.store.api import MailEvent, Queue
from mailwright.store.errors import StoreError

log = logging.getLogger("mailwright.api")

OPEN_PATH = "/v1/t/o/"
CLICK_PATH = "/v1/t/c/"
# A link whose path is one of these is ours already (a tracking or unsubscribe link, in a
# template, say) and is left alone, whatever its host: the public URL may have several
# names, and may sit under a path prefix.
_OWN_PATH = re.compile(r"(?:^|/)v1/(?:t/[oc]|unsubscribe)/")
# The token of a longer URL could pass links.read_token's 4096-character limit, and so
# never lead anywhere: such a link is left untracked.
MAX_URL = 2048
MAX_USER_AGENT = 200
_LINK_TAGS = frozenset({"a", "area"})
# Mirrors html.parser's tolerant tag and attribute rules (CPython 3.11), so we find the
# attributes where the parser found them; each find is checked against the parser's.
_TAG_NAME = re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
_ATTRIBUTE = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*"
    r"('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)
# A value that may go unquoted in HTML (nothing that would end it or start another).
_BARE_VALUE = re.compile(r"[^\s\"'=<>`]+")
_BODY_END = re.compile(r"</body[ \t\n\r\f]*>", re.IGNORECASE)
# A transparent 1x1 GIF89a (43 octets): two colours, index 0 transparent, one pixel of it.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"\x21\xf9\x04\x01\x00\x00\x00\x00"
    b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    b"\x02\x02\x44\x01\x00\x3b"
)


def trackable(url: str) -> bool:
    """Whether ``url`` is one we may sign and redirect to: absolute http or https, a host,
    no control characters (a CR or LF would end the Location field it goes out in)."""
    try:
        size = len(url.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no token can hold it
        return False
    if not url or size > MAX_URL:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host, say
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _ours(url: str) -> bool:
    return bool(_OWN_PATH.search(urlsplit(url).path))


class _LinkFinder(HTMLParser):
    """Collects (start, end, value, quoted) of each link's href value in the document,
    which must be fed whole (positions count from its start)."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self._document = document
        self._lines = [0] + [m.end() for m in re.finditer("\n", document)]
        self.found: list[tuple[int, int, str, bool]] = []  # start, end, url, quoted

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _LINK_TAGS:
            return
        # Browsers follow the first href of a tag; so do we.
        href = next((value for name, value in attrs if name == "href"), None)
        raw = self.get_starttag_text()
        if href is None or raw is None:
            return
        line, column = self.getpos()
        start = self._lines[line - 1] + column
        if self._document[start : start + len(raw)] != raw:
            return  # not where the parser said: leave the link as it is
        span = _href_span(raw)
        if span is None:
            return
        at, end, quoted = span
        if htmllib.unescape(raw[at:end]) != href:
            return  # we and the parser disagree on this tag: leave it alone
        self.found.append((start + at, start + end, href, quoted))


def _href_span(tag: str) -> tuple[int, int, bool] | None:
    """(start, end, quoted) of the first href value inside a start tag's text."""
    name = _TAG_NAME.match(tag, 1)
    if name is None:
        return None
    k = name.end()
    while k < len(tag):
        m = _ATTRIBUTE.match(tag, k)
        if m is None:
            return None
        if m.group(1).lower() == "href":
            if not m.group(2):
                return None
            at, end = m.span(3)
            if tag[at : at + 1] in ("'", '"'):  # the rule's quoted forms end as they began
                return at + 1, end - 1, True
            return at, end, False
        k = m.end()
    return None


def rewrite_links(html: str, click_url: Callable[[str], str]) -> str:
    """``html`` with the href of each ``<a>`` and ``<area>`` pointing at an http(s) URL
    replaced by ``click_url(url)``; every other octet as it was. Other schemes (mailto:,
    tel:, cid:), anchors, relative links and our own links are left alone."""
    finder = _LinkFinder(html)
    try:
        finder.feed(html)
        finder.close()
    except AssertionError:
        # The stdlib parser raises AssertionError on some malformed declarations
        # ("<![x[" ...): links before it are rewritten, the rest left as they are.
        pass
    out: list[str] = []
    done = 0
    for start, end, value, quoted in finder.found:
        url = value.strip(" \t\n\r\f")
        if not trackable(url) or _ours(url):
            continue
        new = htmllib.escape(click_url(url), quote=True)
        if not quoted and not _BARE_VALUE.fullmatch(new):
            new = f'"{new}"'
        out.append(html[done:start])
        out.append(new)
        done = end
    out.append(html[done:])
    return "".join(out)


def add_pixel(html: str, pixel_url: str) -> str:
    """``html`` with a hidden 1x1 image from ``pixel_url`` just before its last
    ``</body>``, or at its end if it has none."""
    tag = (
        f'<img src="{htmllib.escape(pixel_url, quote=True)}" width="1" height="1" alt=""'
        ' style="display:none">'
    )
    ends = [m.start() for m in _BODY_END.finditer(html)]
    if not ends:
        return html + tag
    return html[: ends[-1]] + tag + html[ends[-1] :]


def open_token(secret: bytes, queue_id: str, recipient: str) -> str:
    return make_token(secret, "o", queue_id, recipient)


def click_token(secret: bytes, queue_id: str, recipient: str, url: str) -> str:
    return make_token(secret, "c", queue_id, recipient, url)


def track(
    html: str,
    secret: bytes,
    public_url: str,
    queue_id: str,
    recipient: str,
    *,
    opens: bool,
    clicks: bool,
) -> str:
    """A message's HTML made ready for tracking. ``recipient`` is "" for a message to
    several recipients (one copy of the HTML serves them all)."""
    if clicks:
        html = rewrite_links(
            html,
            lambda url: f"{public_url}{CLICK_PATH}{click_token(secret, queue_id, recipient, url)}",
        )
    if opens:
        html = add_pixel(html, f"{public_url}{OPEN_PATH}{open_token(secret, queue_id, recipient)}")
    return html


def _seen_by(request: Request) -> dict[str, str]:
    agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
    return {
        "user_agent": "".join(c for c in agent if c.isprintable()),
        "ip": request.client.host if request.client else "",
    }


async def _record(request: Request, event: MailEvent) -> None:
    queue: Queue = request.app.state.services.queue
    try:
        await queue.add_events([event])
    except StoreError as exc:
        _lost(event.queue_id, event.type, exc)
        return
    except Exception:
        # Boundary: a bug in recording must not cost the reader the page or the image
        # (a broken image in someone's mail); the event is lost, and logged.
        log.exception("api.track_crash", extra={"fields": {"queue_id": event.queue_id}})
        return
    log_event(log, logging.INFO, f"api.{event.type}", queue_id=event.queue_id)


def _lost(queue_id: str, kind: str, exc: StoreError) -> None:
    log_event(log, logging.ERROR, "api.track_failed", queue_id=queue_id, type=kind, error=str(exc))


def _pixel() -> Response:
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"})


def tracking_routes() -> APIRouter:
    router = APIRouter()

    @router.get(OPEN_PATH + "{token}", include_in_schema=False)
    async def opened(request: Request, token: str) -> Response:
        try:
            secret = await link_secret(request)
        except StoreError as exc:
            # The image all the same: an error would show in the reader's mail.
            _lost("", "opened", exc)
            return _pixel()
        parts = read_token(secret, token, 3)
        if parts is not None and parts[0] == "o":
            _, queue_id, recipient = parts
            await _record(request, MailEvent(queue_id, "opened", recipient, _seen_by(request)))
        return _pixel()

    @router.get(CLICK_PATH + "{token}", include_in_schema=False)
    async def clicked(request: Request, token: str) -> RedirectResponse:
        parts = read_token(await link_secret(request), token, 4)
        if parts is None or parts[0] != "c" or not trackable(parts[3]):
            raise ApiError(404, "not_found", "no such link")
        _, queue_id, recipient, url = parts
        detail = {"url": url, **_seen_by(request)}
        await _record(request, MailEvent(queue_id, "clicked", recipient, detail))
        return RedirectResponse(url, status_code=302)

    return router
