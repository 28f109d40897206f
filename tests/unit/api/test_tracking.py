"""Tracking's pure parts: link rewriting changes the href of http(s) links in <a> and
<area> and not one other character of the document; the pixel goes before the last
</body>; tokens name what they were made for and read back only with the right count."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from mailwright.api.links import read_token
from mailwright.api.tracking import (
    CLICK_PATH,
    MAX_URL,
    OPEN_PATH,
    PIXEL,
    add_pixel,
    click_token,
    open_token,
    rewrite_links,
    track,
    trackable,
    tracking_routes,
)
from mailwright.store.api import MailEvent
from mailwright.store.errors import StoreError

SECRET = b"k" * 32


def tracked(url: str) -> str:
    """A stand-in click URL that shows which URL it was made for."""
    return "https://mw.test/v1/t/c/" + url.replace("://", "~")


def test_a_double_quoted_href_is_replaced_and_nothing_else_moves() -> None:
    doc = '<html><body>\n<p class="x">Read <a id=a1 href="https://example.com/a">this</a>.</p>'
    assert rewrite_links(doc, tracked) == doc.replace(
        '"https://example.com/a"', '"https://mw.test/v1/t/c/https~example.com/a"'
    )


def test_single_quoted_and_unquoted_values_keep_their_form() -> None:
    doc = "<a href='http://a.test/x'>1</a><a href=http://b.test/y>2</a>"
    assert rewrite_links(doc, tracked) == (
        "<a href='https://mw.test/v1/t/c/http~a.test/x'>1</a>"
        "<a href=https://mw.test/v1/t/c/http~b.test/y>2</a>"
    )


def test_an_unquoted_value_is_quoted_when_the_new_one_needs_it() -> None:
    out = rewrite_links("<a href=https://a.test/>x</a>", lambda url: "https://t.test/a b")
    assert out == '<a href="https://t.test/a b">x</a>'


def test_entities_are_unescaped_before_signing_and_escaped_when_written() -> None:
    seen: list[str] = []

    def click(url: str) -> str:
        seen.append(url)
        return 'https://mw.test/v1/t/c/x?a=1&b="2"<\''

    doc = '<a href="https://a.test/p?x=1&amp;y=2&#38;z=3">x</a>'
    out = rewrite_links(doc, click)
    assert seen == ["https://a.test/p?x=1&y=2&z=3"]
    assert out == '<a href="https://mw.test/v1/t/c/x?a=1&amp;b=&quot;2&quot;&lt;&#x27;">x</a>'


def test_uppercase_tags_and_attributes_other_attributes_and_self_closing() -> None:
    doc = (
        '<A CLASS="btn" HREF="HTTPS://A.TEST/" TARGET=_blank>go</A>\r\n'
        '<a\n  title="t"\n  href="http://b.test"\n/>'
    )
    assert rewrite_links(doc, tracked) == (
        '<A CLASS="btn" HREF="https://mw.test/v1/t/c/HTTPS~A.TEST/" TARGET=_blank>go</A>\r\n'
        '<a\n  title="t"\n  href="https://mw.test/v1/t/c/http~b.test"\n/>'
    )


def test_several_links_and_area_links() -> None:
    doc = (
        '<p><a href="https://one.test">1</a> and <a href="https://two.test">2</a></p>'
        '<map name="m"><area shape="rect" coords="0,0,1,1" href="https://three.test/"></map>'
    )
    out = rewrite_links(doc, tracked)
    assert re.findall(r'href="([^"]*)"', out) == [
        "https://mw.test/v1/t/c/https~one.test",
        "https://mw.test/v1/t/c/https~two.test",
        "https://mw.test/v1/t/c/https~three.test/",
    ]
    assert re.sub(r'href="[^"]*"', "", out) == re.sub(r'href="[^"]*"', "", doc)


def test_links_that_are_not_http_are_left_alone() -> None:
    doc = (
        '<a href="mailto:a@example.test">m</a><a href="tel:+1555">t</a><a href="#top">a</a>'
        '<a href="cid:logo@x">c</a><a href="/relative">r</a><a href="page.html">p</a>'
        '<a href="//host.test/x">s</a><a href="javascript:alert(1)">j</a><a href="">e</a>'
        '<a href>n</a><a name="x">no href</a><a href="ftp://f.test/">f</a>'
        '<a href="https://">no host</a><a href="http://[::1">bad host</a>'
    )
    assert rewrite_links(doc, tracked) == doc


def test_links_of_other_tags_are_left_alone() -> None:
    doc = (
        '<link rel="stylesheet" href="https://a.test/s.css"><base href="https://a.test/">'
        '<img src="https://a.test/i.png"><abbr href="https://a.test/">x</abbr>'
        '<!-- <a href="https://a.test/"> --><script>\'<a href="https://a.test/">\'</script>'
    )
    assert rewrite_links(doc, tracked) == doc


def test_our_own_links_are_left_alone() -> None:
    doc = (
        '<a href="https://mw.test/v1/unsubscribe/tok.mac">u</a>'
        '<a href="https://mail.example/base/v1/t/c/tok.mac">c</a>'
        '<a href="http://mw.test/v1/t/o/tok.mac">o</a>'
    )
    assert rewrite_links(doc, tracked) == doc


def test_a_url_with_control_characters_or_too_long_is_left_alone() -> None:
    doc = '<a href="https://a.test/&#10;x">nl</a><a href="https://a.test/' + "x" * MAX_URL + '">'
    assert rewrite_links(doc, tracked) == doc


def test_whitespace_around_a_url_is_not_part_of_it() -> None:
    seen: list[str] = []
    rewrite_links('<a href="  https://a.test/x\n">x</a>', lambda u: seen.append(u) or u)
    assert seen == ["https://a.test/x"]


def test_only_the_first_href_of_a_tag_counts() -> None:
    doc = '<a href="https://first.test/" href="https://second.test/">x</a>'
    assert rewrite_links(doc, tracked) == doc.replace(
        '"https://first.test/"', '"https://mw.test/v1/t/c/https~first.test/"'
    )


def test_a_declaration_the_parser_chokes_on_ends_rewriting_there() -> None:
    # html.parser raises on an unknown marked section; the links before it are tracked.
    doc = '<a href="https://a.test/">a</a><![bogus[ x ]]><a href="https://b.test/">b</a>'
    assert rewrite_links(doc, tracked) == doc.replace(
        '"https://a.test/"', '"https://mw.test/v1/t/c/https~a.test/"'
    )


def test_non_ascii_documents_keep_their_offsets() -> None:
    doc = 'Ünïcödé ✓ — İ\n<p>日本語 <a href="https://a.test/ü">ü</a> 🎉</p>'
    assert rewrite_links(doc, tracked) == doc.replace(
        '"https://a.test/ü"', '"https://mw.test/v1/t/c/https~a.test/ü"'
    )


@given(st.text())
def test_a_document_without_links_is_unchanged(doc: str) -> None:
    if "<a" in doc.lower():
        return
    assert rewrite_links(doc, tracked) == doc


@given(
    st.lists(
        st.sampled_from(
            [
                '<a href="https://a.test/">',
                "<A HREF=http://b.test/x>",
                "<area href='https://c.test/?a&amp;b'>",
                "</a>",
                "<p>",
                "text ",
                "&amp;",
                "<!-- c -->",
                "<![endif]>",
                "\n",
                "é",
                '<a href="mailto:x@y">',
                "<",
                ">",
                '"',
            ]
        )
    )
)
def test_rewriting_changes_only_href_values(pieces: list[str]) -> None:
    doc = "".join(pieces)
    out = rewrite_links(doc, lambda url: "https://mw.test/v1/t/c/T")
    # Put every rewritten value back: the document is what it was.
    back = out.replace("https://mw.test/v1/t/c/T", "\0")
    pattern = re.escape(back).replace("\\\0", "\0").replace("\0", "(.*?)")
    assert re.fullmatch(pattern, doc, re.DOTALL)


def test_the_pixel_goes_before_the_last_body_end_tag() -> None:
    doc = "<html><body><p>x</p><!-- </body> --></BODY >\n</html>"
    out = add_pixel(doc, "https://mw.test/v1/t/o/a.b")
    img = '<img src="https://mw.test/v1/t/o/a.b" width="1" height="1" alt="" style="display:none">'
    assert out == "<html><body><p>x</p><!-- </body> -->" + img + "</BODY >\n</html>"


def test_without_a_body_end_tag_the_pixel_goes_at_the_end_and_is_escaped() -> None:
    out = add_pixel("<p>fragment</p>", 'https://mw.test/o?a=1&b="2"')
    assert out == (
        '<p>fragment</p><img src="https://mw.test/o?a=1&amp;b=&quot;2&quot;" width="1"'
        ' height="1" alt="" style="display:none">'
    )


def test_tokens_name_what_they_were_made_for() -> None:
    click = click_token(SECRET, "Q1", "bob@example.test", "https://a.test/?x=1")
    assert read_token(SECRET, click, 4) == ["c", "Q1", "bob@example.test", "https://a.test/?x=1"]
    assert read_token(SECRET, open_token(SECRET, "Q1", ""), 3) == ["o", "Q1", ""]
    # One kind is not the other: the counts differ, and so does the first part.
    assert read_token(SECRET, click, 3) is None
    assert read_token(b"other" * 8, click, 4) is None


def test_the_longest_trackable_url_still_makes_a_readable_token() -> None:
    url = "https://a.test/" + "é" * ((MAX_URL - 15) // 2)
    assert trackable(url)
    token = click_token(SECRET, "Q" * 40, "x" * 64 + "@" + "d" * 189, url)
    assert read_token(SECRET, token, 4) is not None


def test_trackable() -> None:
    assert trackable("https://a.test") and trackable("HTTP://a.test/x?y#z")
    for url in ("", "ftp://a.test/", "https://", "//a.test/", "https://a.test/\r\nX: y"):
        assert not trackable(url), url
    assert not trackable("https://a.test/" + "x" * MAX_URL)
    assert not trackable("https://a.test/\ud800")


def test_track_uses_both_paths_and_does_each_only_when_asked() -> None:
    doc = '<body><a href="https://a.test/">a</a></body>'
    both = track(doc, SECRET, "https://mw.test", "Q1", "", opens=True, clicks=True)
    assert f'href="https://mw.test{CLICK_PATH}' in both
    assert f'<img src="https://mw.test{OPEN_PATH}' in both
    assert track(doc, SECRET, "https://mw.test", "Q1", "", opens=False, clicks=False) == doc
    assert OPEN_PATH not in track(
        doc, SECRET, "https://mw.test", "Q1", "", opens=False, clicks=True
    )
    assert CLICK_PATH not in track(
        doc, SECRET, "https://mw.test", "Q1", "", opens=True, clicks=False
    )


def test_the_pixel_is_a_43_octet_gif() -> None:
    assert len(PIXEL) == 43 and PIXEL.startswith(b"GIF89a") and PIXEL.endswith(b";")


class _BrokenQueue:
    async def add_events(self, events: list[MailEvent]) -> None:
        raise StoreError("disk full")


class _Secrets:
    async def secret(self, name: str) -> bytes:
        return SECRET


def _get(app: FastAPI, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET through the ASGI app, no server: (status, headers, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"mw.test"), (b"user-agent", b"Test\x01Mail")],
        "client": ("192.0.2.1", 40000),
        "server": ("mw.test", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body


def test_a_store_that_fails_costs_neither_the_image_nor_the_redirect() -> None:
    app = FastAPI()
    app.state.services = SimpleNamespace(queue=_BrokenQueue(), api=_Secrets())
    app.include_router(tracking_routes())
    status, headers, body = _get(app, OPEN_PATH + open_token(SECRET, "Q1", "bob@example.test"))
    assert (status, body, headers["cache-control"]) == (200, PIXEL, "no-store, private")
    click = click_token(SECRET, "Q1", "", "https://a.test/p?x=1&y=2")
    status, headers, _ = _get(app, CLICK_PATH + click)
    assert (status, headers["location"]) == (302, "https://a.test/p?x=1&y=2")


class _Recorder:
    def __init__(self) -> None:
        self.events: list[MailEvent] = []

    async def add_events(self, events: list[MailEvent]) -> None:
        self.events.extend(events)


def test_events_name_the_message_the_recipient_and_who_fetched() -> None:
    queue = _Recorder()
    app = FastAPI()
    app.state.services = SimpleNamespace(queue=queue, api=_Secrets())
    app.include_router(tracking_routes())
    _get(app, OPEN_PATH + open_token(SECRET, "Q1", "bob@example.test"))
    _get(app, CLICK_PATH + click_token(SECRET, "Q1", "", "https://a.test/"))
    # A control character from the request does not reach the event (nor a webhook).
    seen = {"user_agent": "TestMail", "ip": "192.0.2.1"}
    assert queue.events == [
        MailEvent("Q1", "opened", "bob@example.test", seen),
        MailEvent("Q1", "clicked", "", {"url": "https://a.test/", **seen}),
    ]
    # A token of another secret records nothing, and still gets the image.
    status, _, body = _get(app, OPEN_PATH + open_token(b"x" * 32, "Q1", "bob@example.test"))
    assert (status, body, len(queue.events)) == (200, PIXEL, 2)
