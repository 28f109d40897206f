"""The outbound SMTP client against real peers on loopback: Postfix's smtp-sink (told to
refuse, drop, stall or hide extensions), and a small asyncio SMTP server in this file for
what smtp-sink cannot do (per-recipient replies, SIZE, SMTPUTF8, STARTTLS with a
self-signed certificate, AUTH, slow replies at each stage).

Every test runs inside ``asyncio.wait_for`` (or a subprocess timeout); every process
started here is stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pytest

from mailwright.config import parse_config
from mailwright.config.model import SmtpClientTimeouts
from mailwright.outbound.client import (
    ClientSettings,
    Connection,
    Delivery,
    Destination,
    Envelope,
    Outcome,
    Recipient,
    deliver,
)
from mailwright.serve.tls import make_self_signed, server_context
from tests.interop.conftest import require

T = TypeVar("T")
LIMIT = 30.0

FAST = SmtpClientTimeouts(
    connect=5, greeting=5, command=5, mail=5, rcpt=5, data_init=5, data_block=5, data_done=5,
    tls_handshake=5,
)  # fmt: skip
MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: test\r\n"
    b"Message-ID: <t1@example.org>\r\n"
    b"\r\n"
    b"Hello.\r\n"
    b".A line that starts with a dot\r\n"
    b"..and two\r\n"
    b"Bye.\r\n"
)
EIGHT_BIT = (
    "From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Schöne Grüße\r\n"
).encode()


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, LIMIT)

    return asyncio.run(bounded())


def settings(**kwargs: object) -> ClientSettings:
    base = ClientSettings(helo_name="client.example.org", timeouts=FAST, tls_policy="none")
    return replace(base, **kwargs)  # type: ignore[arg-type]


def envelope(*rcpts: str, **kwargs: object) -> Envelope:
    recipients = tuple(Recipient(r) for r in (rcpts or ("bob@remote.test",)))
    return replace(Envelope("alice@example.org", recipients), **kwargs)  # type: ignore[arg-type]


def outcomes(delivery: Delivery) -> list[Outcome]:
    return [r.outcome for r in delivery.results]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- smtp-sink ------------------------------------------------------------------------------


@dataclass
class Sink:
    port: int
    dump: Path
    proc: subprocess.Popen[bytes]

    @property
    def dest(self) -> Destination:
        return Destination("sink.test", "127.0.0.1", self.port)

    def messages(self) -> list[tuple[dict[str, list[str]], bytes]]:
        """(smtp-sink's X- fields, the message as sent) of every dumped transaction.

        smtp-sink opens a transaction's file at MAIL and removes it when the transaction
        ends without DATA; a file without the Received line that DATA adds is such a
        transaction, not yet ended (a busy machine), and holds no message."""
        out = []
        for path in sorted(self.dump.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # removed meanwhile: a transaction without DATA
            head, found, rest = raw.partition(b"\nReceived: ")
            if not found:
                continue
            fields: dict[str, list[str]] = {}
            for line in head.decode().splitlines():
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
            message = rest.split(b"\n", 3)[3]  # the Received header is three lines
            out.append((fields, message.removesuffix(b"\n")))
        return out


def start_sink(tmp_path: Path, *options: str) -> Sink:
    binary = require("smtp-sink")
    dump = tmp_path / "sink"
    dump.mkdir(mode=0o777, parents=True)
    dump.chmod(0o777)
    port = free_port()
    user = ["-u", "root"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [binary, *user, "-d", f"{dump}/m.", *options, f"127.0.0.1:{port}", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                raise RuntimeError("smtp-sink did not start") from None
            time.sleep(0.02)
    return Sink(port, dump, proc)


@pytest.fixture
def sink_factory(tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    started: list[Sink] = []

    def make(*options: str) -> Sink:
        sink = start_sink(tmp_path / str(len(started)), *options)
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.proc.terminate()
        try:
            sink.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.proc.kill()
            sink.proc.wait(timeout=10)


def test_sink_delivery_with_dsn_parameters(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory()
    env = Envelope(
        "alice@example.org",
        (
            Recipient(
                "bob@remote.test", notify=("SUCCESS", "FAILURE"), orcpt="rfc822;Bob+x@remote.test"
            ),
            Recipient("carol@remote.test", notify=("NEVER",)),
        ),
        ret="HDRS",
        envid="Q 1+2",
        queue_id="QID1",
    )
    delivery = run(deliver(sink.dest, settings(), env, MESSAGE))
    assert outcomes(delivery) == [Outcome.DELIVERED, Outcome.DELIVERED]
    first = delivery.results[0]
    assert first.reply.code == 250 and first.reply.status == "2.0.0"
    assert first.remote and first.stage == "content"
    assert first.host == "sink.test[127.0.0.1]:" + str(sink.port)
    assert first.diagnostic.startswith("250 2.0.0")
    assert delivery.dsn and delivery.tls is None and not delivery.tls_fallback
    ((fields, message),) = sink.messages()
    assert fields["X-Helo-Args"] == ["client.example.org"]
    assert fields["X-Mail-Args"] == ["<alice@example.org> RET=HDRS ENVID=Q+201+2B2"]
    assert fields["X-Rcpt-Args"] == [
        "<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@remote.test",
        "<carol@remote.test> NOTIFY=NEVER",
    ]
    assert message == MESSAGE.replace(b"\r\n", b"\n")  # dot-stuffing undone by the sink


def test_sink_without_dsn_gets_no_dsn_parameters(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory("-N")
    env = replace(
        envelope(), ret="FULL", envid="x", recipients=(Recipient("b@r.test", notify=("DELAY",)),)
    )
    delivery = run(deliver(sink.dest, settings(), env, MESSAGE))
    assert outcomes(delivery) == [Outcome.DELIVERED]
    assert not delivery.dsn
    ((fields, _),) = sink.messages()
    assert fields["X-Mail-Args"] == ["<alice@example.org>"]
    assert fields["X-Rcpt-Args"] == ["<b@r.test>"]


def test_sink_without_pipelining(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory("-p")
    delivery = run(deliver(sink.dest, settings(), envelope("a@r.test", "b@r.test"), MESSAGE))
    assert outcomes(delivery) == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(sink.messages()) == 1


def test_sink_without_esmtp_gets_helo(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory("-e")
    delivery = run(deliver(sink.dest, settings(), envelope(), MESSAGE))
    assert outcomes(delivery) == [Outcome.DELIVERED]
    ((fields, _),) = sink.messages()
    assert fields["X-Client-Proto"] == ["SMTP"]  # HELO, not EHLO
    assert fields["X-Mail-Args"] == ["<alice@example.org>"]  # and no ESMTP parameters


def test_eight_bit_body_to_a_server_with_8bitmime(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory()
    delivery = run(deliver(sink.dest, settings(), envelope(eight_bit=True), EIGHT_BIT))
    assert outcomes(delivery) == [Outcome.DELIVERED]
    ((fields, message),) = sink.messages()
    assert fields["X-Mail-Args"] == ["<alice@example.org> BODY=8BITMIME"]
    assert message == EIGHT_BIT.replace(b"\r\n", b"\n")


def test_eight_bit_body_to_a_server_without_8bitmime_is_converted(
    sink_factory: Callable[..., Sink],
) -> None:
    sink = sink_factory("-8")
    # The envelope says 7-bit (a client that lied): the content is checked all the same.
    delivery = run(deliver(sink.dest, settings(), envelope(eight_bit=False), EIGHT_BIT))
    assert outcomes(delivery) == [Outcome.DELIVERED]
    ((fields, message),) = sink.messages()
    assert fields["X-Mail-Args"] == ["<alice@example.org>"]
    assert message.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable" in message
    assert b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe" in message


def test_eight_bit_header_to_a_server_without_8bitmime_fails(
    sink_factory: Callable[..., Sink],
) -> None:
    sink = sink_factory("-8")
    data = EIGHT_BIT.replace(b"Subject: 8bit", "Subject: Grüße".encode())
    delivery = run(deliver(sink.dest, settings(), envelope(eight_bit=True), data))
    (result,) = delivery.results
    assert result.outcome is Outcome.FAILED
    assert result.reply.status == "5.6.3" and not result.remote
    assert sink.messages() == []  # nothing was sent


@pytest.mark.parametrize(
    ("options", "expected", "status", "stage"),
    [
        (("-r", "RCPT"), Outcome.DEFERRED, "4.3.0", "rcpt"),
        (("-f", "RCPT"), Outcome.FAILED, "5.3.0", "rcpt"),
        (("-r", "MAIL"), Outcome.DEFERRED, "4.3.0", "mail"),
        (("-f", "MAIL"), Outcome.FAILED, "5.3.0", "mail"),
        (("-r", "DATA"), Outcome.DEFERRED, "4.3.0", "data"),
        (("-f", "."), Outcome.FAILED, "5.3.0", "content"),
        (("-r", "."), Outcome.DEFERRED, "4.3.0", "content"),
        (("-f", "CONNECT"), Outcome.FAILED, "5.3.0", "greeting"),
        (("-r", "HELO,EHLO"), Outcome.DEFERRED, "4.3.0", "ehlo"),
        (("-Q", "MAIL"), Outcome.DEFERRED, "4.3.0", "mail"),
    ],
)
def test_sink_refusals(
    sink_factory: Callable[..., Sink],
    options: tuple[str, ...],
    expected: Outcome,
    status: str,
    stage: str,
) -> None:
    sink = sink_factory(*options)
    delivery = run(deliver(sink.dest, settings(), envelope("a@r.test", "b@r.test"), MESSAGE))
    assert outcomes(delivery) == [expected, expected]
    for r in delivery.results:
        assert r.stage == stage
        assert r.remote
        assert r.reply.status == status or (options[0] == "-Q" and r.reply.code == 421)
    assert sink.messages() == [] or options == ("-r", ".") or options == ("-f", ".")


def test_sink_drops_the_connection_at_rcpt(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory("-q", "RCPT")
    delivery = run(deliver(sink.dest, settings(), envelope(), MESSAGE))
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and not r.remote
    assert r.reply.status == "4.4.2"
    assert "closed" in r.diagnostic or "lost" in r.diagnostic


def test_slow_mail_reply_times_out(sink_factory: Callable[..., Sink]) -> None:
    # Without PIPELINING: smtp-sink's -W answers later commands before the delayed one.
    sink = sink_factory("-p", "-W", "MAIL:3")
    start = time.monotonic()
    delivery = run(
        deliver(sink.dest, settings(timeouts=replace(FAST, mail=0.5)), envelope(), MESSAGE)
    )
    assert time.monotonic() - start < 2.5
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED
    assert r.reply.status == "4.4.2" and "timeout" in r.diagnostic and r.stage == "mail"


def test_slow_greeting_times_out(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory("-W", "CONNECT:3")
    start = time.monotonic()
    delivery = run(
        deliver(sink.dest, settings(timeouts=replace(FAST, greeting=0.5)), envelope(), MESSAGE)
    )
    assert time.monotonic() - start < 2.5
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.stage == "greeting" and "timeout" in r.diagnostic


def test_connection_reuse_sends_several_messages(sink_factory: Callable[..., Sink]) -> None:
    sink = sink_factory()

    async def go() -> list[Delivery]:
        conn = await Connection.open(sink.dest, settings())
        try:
            out = []
            for i in range(3):
                body = MESSAGE.replace(b"Subject: test", f"Subject: n{i}".encode())
                out.append(await conn.send(envelope(f"r{i}@remote.test"), body))
                assert conn.usable
            return out
        finally:
            await conn.quit()

    deliveries = run(go())
    assert [outcomes(d) for d in deliveries] == [[Outcome.DELIVERED]] * 3
    got = sorted(sink.messages(), key=lambda fm: fm[0]["X-Rcpt-Args"])
    assert [f["X-Rcpt-Args"] for f, _ in got] == [[f"<r{i}@remote.test>"] for i in range(3)]
    assert [m.split(b"\n")[2] for _, m in got] == [b"Subject: n0", b"Subject: n1", b"Subject: n2"]


def test_large_message_is_streamed_from_a_file(
    sink_factory: Callable[..., Sink], tmp_path: Path
) -> None:
    sink = sink_factory()
    body = b"".join(b".line %06d with some text to make it longer\r\n" % i for i in range(60000))
    path = tmp_path / "big.eml"
    path.write_bytes(MESSAGE + body)
    delivery = run(deliver(sink.dest, settings(), envelope(), path))
    assert outcomes(delivery) == [Outcome.DELIVERED]
    ((_, message),) = sink.messages()
    assert message == (MESSAGE + body).replace(b"\r\n", b"\n")


def test_nothing_listening_is_deferred() -> None:
    dest = Destination("down.test", "127.0.0.1", free_port())
    delivery = run(deliver(dest, settings(), envelope("a@r.test", "b@r.test"), MESSAGE))
    assert outcomes(delivery) == [Outcome.DEFERRED, Outcome.DEFERRED]
    r = delivery.results[0]
    assert r.stage == "connect" and r.reply.status == "4.4.1" and not r.remote
    assert "refused" in r.diagnostic.lower()


# -- a scripted SMTP server ---------------------------------------------------------------


@dataclass
class Session:
    chunks: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    tls: bool = False
    auth: tuple[str, str] | None = None


@dataclass
class Script:
    extensions: list[str] = field(
        default_factory=lambda: ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN"]
    )
    greeting: bytes = b"220 mx.test ESMTP test\r\n"
    rcpt: dict[str, bytes] = field(default_factory=dict)  # address → reply line
    data_end: bytes = b"250 2.0.0 Ok: queued\r\n"
    delay: dict[str, float] = field(default_factory=dict)  # command → seconds
    tls: ssl.SSLContext | None = None  # offer STARTTLS
    starttls_reply: bytes = b"220 2.0.0 Ready\r\n"
    tls_garbage: bool = False  # answer STARTTLS, then send junk instead of a handshake
    credentials: tuple[str, str] | None = None  # offer AUTH PLAIN LOGIN after TLS
    auth_mechanisms: str = "PLAIN LOGIN"
    drop_in_data: bool = False  # close the connection in the middle of the message
    ehlo_reply: bytes | None = None  # instead of the usual EHLO reply
    data_always: bool = False  # 354 to DATA even with no recipient accepted (broken)


class ScriptedServer:
    def __init__(self, script: Script, *, implicit_tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.sessions: list[Session] = []
        self.implicit_tls = implicit_tls
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.implicit_tls
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def dest(self, host: str = "mx.test") -> Destination:
        return Destination(host, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(tls=self.implicit_tls is not None)
        self.sessions.append(session)
        s = self.script
        buffer = b""
        accepted = 0

        async def line() -> bytes | None:
            nonlocal buffer
            while b"\r\n" not in buffer:
                chunk = await reader.read(65536)
                if not chunk:
                    return None
                session.chunks.append(chunk)
                buffer += chunk
            text, buffer = buffer.split(b"\r\n", 1)
            return text

        async def reply(data: bytes, verb: str) -> None:
            if verb in s.delay:
                await asyncio.sleep(s.delay[verb])
            writer.write(data)
            await writer.drain()

        try:
            await reply(s.greeting, "CONNECT")
            if not s.greeting.startswith(b"220"):
                return
            while (raw := await line()) is not None:
                text = raw.decode("utf-8", "replace")
                session.commands.append(text)
                verb = text.split(" ", 1)[0].upper()
                if verb == "EHLO" and s.ehlo_reply is not None:
                    await reply(s.ehlo_reply, verb)
                elif verb == "EHLO":
                    ext = list(s.extensions)
                    if s.tls is not None and not session.tls:
                        ext.append("STARTTLS")
                    if s.credentials is not None and session.tls:
                        ext.append(f"AUTH {s.auth_mechanisms}")
                    lines = ["mx.test", *ext]
                    out = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                    await reply(out.encode(), verb)
                elif verb == "HELO":
                    await reply(b"250 mx.test\r\n", verb)
                elif verb == "STARTTLS":
                    await reply(s.starttls_reply, verb)
                    if not s.starttls_reply.startswith(b"220"):
                        continue
                    if s.tls_garbage:
                        writer.write(b"this is not TLS\r\n" * 4)
                        await writer.drain()
                        writer.close()
                        return
                    assert s.tls is not None
                    buffer = b""
                    await writer.start_tls(s.tls)
                    session.tls = True
                elif verb == "AUTH":
                    parts = text.split(" ")
                    if parts[1].upper() == "PLAIN":
                        _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                    else:
                        await reply(b"334 VXNlcm5hbWU6\r\n", verb)
                        user = base64.b64decode((await line()) or b"").decode()
                        await reply(b"334 UGFzc3dvcmQ6\r\n", verb)
                        password = base64.b64decode((await line()) or b"").decode()
                    session.auth = (user, password)
                    if (user, password) == s.credentials:
                        await reply(b"235 2.7.0 Authentication successful\r\n", verb)
                    else:
                        await reply(b"535 5.7.8 Authentication credentials invalid\r\n", verb)
                elif verb == "MAIL":
                    accepted = 0
                    await reply(b"250 2.1.0 Ok\r\n", verb)
                elif verb == "RCPT":
                    address = text.split("<", 1)[1].split(">", 1)[0]
                    answer = s.rcpt.get(address, b"250 2.1.5 Ok\r\n")
                    accepted += answer.startswith(b"2")
                    await reply(answer, verb)
                elif verb == "DATA":
                    if not accepted and not s.data_always:
                        await reply(b"554 5.5.1 No valid recipients\r\n", verb)
                        continue
                    await reply(b"354 go ahead\r\n", verb)
                    while b"\r\n.\r\n" not in b"\r\n" + buffer:
                        if s.drop_in_data and buffer:
                            writer.close()
                            return
                        chunk = await reader.read(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    data, buffer = (b"\r\n" + buffer).split(b"\r\n.\r\n", 1)
                    data = data[2:] + b"\r\n" if data != b"\r\n" else b""
                    session.messages.append(data.replace(b"\r\n..", b"\r\n."))
                    await reply(s.data_end, ".")
                elif verb == "RSET":
                    accepted = 0
                    await reply(b"250 2.0.0 Ok\r\n", verb)
                elif verb == "QUIT":
                    await reply(b"221 2.0.0 Bye\r\n", verb)
                    break
                else:
                    await reply(b"502 5.5.2 Error: command not recognized\r\n", verb)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def scripted(
    script: Script,
    body: Callable[[ScriptedServer], Awaitable[T]],
    *,
    implicit_tls: ssl.SSLContext | None = None,
) -> T:
    async def go() -> T:
        async with ScriptedServer(script, implicit_tls=implicit_tls) as server:
            return await body(server)

    return run(go())


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for mx.test (and localhost, 127.0.0.1) and its context."""
    d = tmp_path_factory.mktemp("tls")
    make_self_signed(d / "cert.pem", d / "key.pem", "mx.test")
    return d / "cert.pem", server_context(d / "cert.pem", d / "key.pem")


def test_per_recipient_replies_and_pipelining() -> None:
    script = Script(
        rcpt={
            "temp@remote.test": b"451 4.3.0 try later\r\n",
            "gone@remote.test": b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n",
        }
    )

    async def body(server: ScriptedServer) -> Delivery:
        env = envelope("ok@remote.test", "temp@remote.test", "gone@remote.test", "ok2@remote.test")
        return await deliver(server.dest(), settings(), env, MESSAGE)

    server_box: list[ScriptedServer] = []

    async def capture(server: ScriptedServer) -> Delivery:
        server_box.append(server)
        return await body(server)

    delivery = scripted(script, capture)
    assert outcomes(delivery) == [
        Outcome.DELIVERED,
        Outcome.DEFERRED,
        Outcome.FAILED,
        Outcome.DELIVERED,
    ]
    gone = delivery.results[2]
    assert gone.stage == "rcpt" and gone.remote
    assert gone.diagnostic == "550 5.1.1 no such user really"
    assert delivery.results[1].reply.status == "4.3.0"
    (session,) = server_box[0].sessions
    assert session.messages == [MESSAGE]
    # RFC 2920: MAIL and every RCPT left in one write, so they arrived together.
    together = [c for c in session.chunks if b"MAIL FROM" in c]
    assert together and together[0].count(b"RCPT TO") == 4


def test_without_pipelining_commands_go_one_by_one() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope("a@r.test", "b@r.test"), MESSAGE)

    delivery = scripted(Script(extensions=["8BITMIME"]), body)
    assert outcomes(delivery) == [Outcome.DELIVERED] * 2
    for chunk in box[0].sessions[0].chunks:
        assert chunk.count(b"\r\n") <= 1 or chunk.startswith(b"From:")


def test_data_reply_applies_to_all_accepted_recipients() -> None:
    script = Script(
        rcpt={"no@r.test": b"550 5.1.1 unknown\r\n"}, data_end=b"552 5.3.4 too big for me\r\n"
    )
    delivery = scripted(
        script,
        lambda s: deliver(
            s.dest(), settings(), envelope("a@r.test", "no@r.test", "b@r.test"), MESSAGE
        ),
    )
    assert outcomes(delivery) == [Outcome.FAILED] * 3
    assert [r.stage for r in delivery.results] == ["content", "rcpt", "content"]
    assert delivery.results[0].reply.status == "5.3.4"
    assert delivery.results[1].reply.status == "5.1.1"


@pytest.mark.parametrize("pipelining", [True, False])
def test_no_recipient_accepted_sends_no_content(pipelining: bool) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope("no@r.test"), MESSAGE)

    extensions = ["PIPELINING"] if pipelining else []
    script = Script(extensions=extensions, rcpt={"no@r.test": b"550 5.1.1 unknown\r\n"})
    delivery = scripted(script, body)
    assert outcomes(delivery) == [Outcome.FAILED]
    assert delivery.results[0].reply.status == "5.1.1"
    (session,) = box[0].sessions
    # Pipelined, DATA ends the group (RFC 2920 §3.1) and the server refuses it; one at
    # a time, DATA is not sent at all. Either way no content goes.
    assert any(c.startswith("DATA") for c in session.commands) is pipelining
    assert session.messages == []


def test_pipelined_data_goes_with_mail_and_rcpt() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope("a@r.test", "b@r.test"), MESSAGE)

    delivery = scripted(Script(), body)
    assert outcomes(delivery) == [Outcome.DELIVERED] * 2
    (session,) = box[0].sessions
    (group,) = [c for c in session.chunks if b"MAIL FROM" in c]
    assert group.endswith(b"DATA\r\n") and group.count(b"RCPT TO") == 2
    assert session.messages == [MESSAGE]


def test_354_without_recipients_gets_an_empty_end_and_the_session_goes_on() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> list[Delivery]:
        box.append(server)
        conn = await Connection.open(server.dest(), settings())
        try:
            refused = await conn.send(envelope("no@r.test"), MESSAGE)
            assert conn.usable
            return [refused, await conn.send(envelope("a@r.test"), MESSAGE)]
        finally:
            await conn.quit()

    script = Script(rcpt={"no@r.test": b"550 5.1.1 unknown\r\n"}, data_always=True)
    refused, delivered = scripted(script, body)
    assert outcomes(refused) == [Outcome.FAILED] and refused.results[0].reply.status == "5.1.1"
    assert outcomes(delivered) == [Outcome.DELIVERED]
    (session,) = box[0].sessions
    # The "." ended the first transaction: no RSET is needed before the next MAIL.
    verbs = [c.split()[0] for c in session.commands if c]
    assert verbs == ["EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "QUIT"]
    assert session.messages[-1] == MESSAGE and MESSAGE not in session.messages[:-1]


def test_size_over_the_servers_limit_fails_without_sending() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> tuple[Delivery, Delivery]:
        box.append(server)
        big = await deliver(server.dest(), settings(), envelope(), MESSAGE + b"x" * 2000 + b"\r\n")
        small = await deliver(server.dest(), settings(), envelope(), MESSAGE)
        return big, small

    big, small = scripted(Script(extensions=["PIPELINING", "SIZE 1000"]), body)
    (r,) = big.results
    assert r.outcome is Outcome.FAILED and r.reply.status == "5.3.4" and not r.remote
    assert not any(c.startswith("MAIL") for c in box[0].sessions[0].commands)
    assert outcomes(small) == [Outcome.DELIVERED]
    assert f"MAIL FROM:<alice@example.org> SIZE={len(MESSAGE)}" in box[0].sessions[1].commands


def test_smtputf8_needed_but_not_offered_fails() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope("jörg@bücher.test"), MESSAGE)

    delivery = scripted(Script(), body)
    (r,) = delivery.results
    assert r.outcome is Outcome.FAILED and r.reply.status == "5.6.7"
    assert not any(c.startswith("MAIL") for c in box[0].sessions[0].commands)


def test_smtputf8_offered() -> None:
    box: list[ScriptedServer] = []
    data = "Subject: Grüße\r\n\r\nü\r\n".encode()

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        env = envelope("jörg@bücher.test", smtputf8=True, eight_bit=True)
        return await deliver(server.dest(), settings(), env, data)

    script = Script(extensions=["PIPELINING", "8BITMIME", "SMTPUTF8"])
    delivery = scripted(script, body)
    assert outcomes(delivery) == [Outcome.DELIVERED]
    commands = box[0].sessions[0].commands
    assert "MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8" in commands
    assert "RCPT TO:<jörg@bücher.test>" in commands
    assert box[0].sessions[0].messages == [data]


def test_starttls_opportunistic(cert: tuple[Path, ssl.SSLContext]) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(
            server.dest(), settings(tls_policy="opportunistic"), envelope(), MESSAGE
        )

    delivery = scripted(Script(tls=cert[1]), body)
    assert outcomes(delivery) == [Outcome.DELIVERED]
    assert delivery.tls is not None and delivery.tls.startswith("TLSv1.")
    (session,) = box[0].sessions
    assert session.tls and session.messages == [MESSAGE]
    # EHLO again after TLS (RFC 3207 §4.2).
    assert [c.split()[0] for c in session.commands[:3]] == ["EHLO", "STARTTLS", "EHLO"]


def test_opportunistic_tls_failure_retries_in_plaintext(
    cert: tuple[Path, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(
            server.dest(), settings(tls_policy="opportunistic"), envelope(), MESSAGE
        )

    with caplog.at_level(logging.WARNING, logger="mailwright.outbound"):
        delivery = scripted(Script(tls=cert[1], tls_garbage=True), body)
    assert outcomes(delivery) == [Outcome.DELIVERED]
    assert delivery.tls is None and delivery.tls_fallback
    first, second = box[0].sessions
    assert "STARTTLS" in first.commands and not first.messages
    assert "STARTTLS" not in second.commands and second.messages == [MESSAGE]
    assert any(r.getMessage() == "outbound.tls_fallback" for r in caplog.records)


@pytest.mark.parametrize("policy", ["require", "verify"])
def test_tls_required_but_not_offered_defers(policy: str) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(tls_policy=policy), envelope(), MESSAGE)

    delivery = scripted(Script(), body)
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.stage == "starttls" and r.reply.status == "4.7.4"
    assert not any(c.startswith("MAIL") for c in box[0].sessions[0].commands)


def test_tls_required_but_refused_defers(cert: tuple[Path, ssl.SSLContext]) -> None:
    script = Script(tls=cert[1], starttls_reply=b"454 4.7.0 TLS not available\r\n")
    delivery = scripted(
        script, lambda s: deliver(s.dest(), settings(tls_policy="require"), envelope(), MESSAGE)
    )
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.reply.status == "4.7.4" and "454" in r.diagnostic


def test_opportunistic_continues_in_plaintext_when_starttls_is_refused(
    cert: tuple[Path, ssl.SSLContext],
) -> None:
    script = Script(tls=cert[1], starttls_reply=b"454 4.7.0 TLS not available\r\n")
    delivery = scripted(
        script,
        lambda s: deliver(s.dest(), settings(tls_policy="opportunistic"), envelope(), MESSAGE),
    )
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is None


def test_require_does_not_check_the_certificate(cert: tuple[Path, ssl.SSLContext]) -> None:
    delivery = scripted(
        Script(tls=cert[1]),
        lambda s: deliver(
            s.dest("wrong.test"), settings(tls_policy="require"), envelope(), MESSAGE
        ),
    )
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is not None


def test_verify_with_the_right_ca_and_name(cert: tuple[Path, ssl.SSLContext]) -> None:
    s = settings(tls_policy="verify", ca_file=str(cert[0]))
    delivery = scripted(
        Script(tls=cert[1]), lambda srv: deliver(srv.dest("mx.test"), s, envelope(), MESSAGE)
    )
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is not None


@pytest.mark.parametrize(("host", "ca"), [("other.test", True), ("mx.test", False)])
def test_verify_failures_defer(cert: tuple[Path, ssl.SSLContext], host: str, ca: bool) -> None:
    s = settings(tls_policy="verify", ca_file=str(cert[0]) if ca else None)
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(host), s, envelope(), MESSAGE)

    delivery = scripted(Script(tls=cert[1]), body)
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.stage == "starttls" and r.reply.status == "4.7.5"
    assert len(box[0].sessions) == 1  # no plaintext retry under "verify"
    assert not box[0].sessions[0].messages


def test_policy_none_never_starts_tls(cert: tuple[Path, ssl.SSLContext]) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(tls_policy="none"), envelope(), MESSAGE)

    assert outcomes(scripted(Script(tls=cert[1]), body)) == [Outcome.DELIVERED]
    assert "STARTTLS" not in box[0].sessions[0].commands


def test_plaintext_after_the_starttls_reply_is_discarded(
    cert: tuple[Path, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    # A man in the middle appends a reply to the 220; it must not be read after TLS.
    script = Script(tls=cert[1], starttls_reply=b"220 2.0.0 Ready\r\n250 2.0.0 injected\r\n")
    with caplog.at_level(logging.WARNING, logger="mailwright.outbound"):
        delivery = scripted(
            script,
            lambda s: deliver(s.dest(), settings(tls_policy="opportunistic"), envelope(), MESSAGE),
        )
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is not None
    assert any(r.getMessage() == "outbound.starttls_plaintext_discarded" for r in caplog.records)


def test_greeting_554_fails_for_this_host() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope(), MESSAGE)

    delivery = scripted(Script(greeting=b"554 5.7.1 go away\r\n"), body)
    (r,) = delivery.results
    assert r.outcome is Outcome.FAILED and r.stage == "greeting" and r.reply.status == "5.7.1"


@pytest.mark.parametrize(
    ("stage", "verb", "timeouts"),
    [
        ("rcpt", "RCPT", replace(FAST, rcpt=0.3)),
        ("data", "DATA", replace(FAST, data_init=0.3)),
        ("content", ".", replace(FAST, data_done=0.3)),
        ("ehlo", "EHLO", replace(FAST, command=0.3)),
    ],
)
def test_slow_replies_time_out(stage: str, verb: str, timeouts: SmtpClientTimeouts) -> None:
    start = time.monotonic()
    delivery = scripted(
        Script(delay={verb: 3.0}),
        lambda s: deliver(s.dest(), settings(timeouts=timeouts), envelope(), MESSAGE),
    )
    assert time.monotonic() - start < 2.5
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.stage == stage and r.reply.status == "4.4.2"
    assert "timeout" in r.diagnostic


def test_connection_lost_in_the_middle_of_data_defers() -> None:
    delivery = scripted(
        Script(drop_in_data=True),
        lambda s: deliver(s.dest(), settings(), envelope(), MESSAGE + b"x" * 300000 + b"\r\n"),
    )
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.stage == "content" and r.reply.status == "4.4.2"


def test_reuse_sends_rset_only_after_an_unfinished_transaction() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> list[Delivery]:
        box.append(server)
        conn = await Connection.open(server.dest(), settings())
        try:
            return [
                await conn.send(envelope("a@r.test"), MESSAGE),
                await conn.send(envelope("b@r.test", "c@r.test"), MESSAGE),
                await conn.send(envelope("no@r.test"), MESSAGE),  # MAIL accepted, then nothing
                await conn.send(envelope("d@r.test"), MESSAGE),
            ]
        finally:
            await conn.quit()

    deliveries = scripted(Script(rcpt={"no@r.test": b"550 5.1.1 unknown\r\n"}), body)
    assert [outcomes(d) for d in deliveries] == [
        [Outcome.DELIVERED],
        [Outcome.DELIVERED] * 2,
        [Outcome.FAILED],
        [Outcome.DELIVERED],
    ]
    (session,) = box[0].sessions
    verbs = [c.split()[0] for c in session.commands]
    # A transaction ends with the reply to its data (RFC 5321 §4.1.1.4); only the one
    # refused at DATA is still open on the server and needs RSET (§4.1.1.5).
    assert verbs == [
        "EHLO",
        *("MAIL", "RCPT", "DATA"),
        *("MAIL", "RCPT", "RCPT", "DATA"),
        *("MAIL", "RCPT", "DATA"),
        *("RSET", "MAIL", "RCPT", "DATA"),
        "QUIT",
    ]
    assert session.messages == [MESSAGE] * 3


# -- smarthost: AUTH over TLS ---------------------------------------------------------------


def smarthost_config(port: int, cert: Path, **smarthost: object) -> ClientSettings:
    config = parse_config(
        {
            "data_dir": "/nonexistent",
            "hostname": "home.example.org",
            "outbound": {
                "ca_file": str(cert),
                "smarthost": {"host": "localhost", "port": port, **smarthost},
            },
        }
    )
    dest, s = ClientSettings.for_smarthost(config)
    assert dest == Destination("localhost", "localhost", port)
    assert s.helo_name == "home.example.org" and s.tls_policy == "verify"
    return replace(s, timeouts=FAST)


@pytest.mark.parametrize("mechanisms", ["PLAIN LOGIN", "LOGIN"])
def test_smarthost_auth(cert: tuple[Path, ssl.SSLContext], mechanisms: str) -> None:
    box: list[ScriptedServer] = []
    script = Script(tls=cert[1], credentials=("home", "s3cret"), auth_mechanisms=mechanisms)

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        s = smarthost_config(server.port, cert[0], username="home", password="s3cret")
        return await deliver(
            Destination("localhost", "localhost", server.port), s, envelope(), MESSAGE
        )

    delivery = scripted(script, body)
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is not None
    (session,) = box[0].sessions
    assert session.auth == ("home", "s3cret") and session.tls
    assert session.commands[3].startswith("AUTH " + mechanisms.split()[0])


def test_smarthost_wrong_password_defers(cert: tuple[Path, ssl.SSLContext]) -> None:
    script = Script(tls=cert[1], credentials=("home", "s3cret"))

    async def body(server: ScriptedServer) -> Delivery:
        s = smarthost_config(server.port, cert[0], username="home", password="wrong")
        return await deliver(
            Destination("localhost", "localhost", server.port), s, envelope(), MESSAGE
        )

    (r,) = scripted(script, body).results
    assert r.outcome is Outcome.DEFERRED and r.stage == "auth" and r.reply.code == 535


def test_smarthost_without_tls_gets_no_credentials(cert: tuple[Path, ssl.SSLContext]) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        s = smarthost_config(server.port, cert[0], username="home", password="s3cret")
        return await deliver(
            Destination("localhost", "localhost", server.port), s, envelope(), MESSAGE
        )

    (r,) = scripted(Script(credentials=("home", "s3cret")), body).results
    assert r.outcome is Outcome.DEFERRED and r.stage == "starttls"
    assert not any(c.startswith("AUTH") for c in box[0].sessions[0].commands)


def test_smarthost_implicit_tls(cert: tuple[Path, ssl.SSLContext]) -> None:
    box: list[ScriptedServer] = []
    script = Script(credentials=("home", "s3cret"))

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        s = smarthost_config(
            server.port, cert[0], tls="implicit", username="home", password="s3cret"
        )
        assert s.implicit_tls
        return await deliver(
            Destination("localhost", "localhost", server.port), s, envelope(), MESSAGE
        )

    delivery = scripted(script, body, implicit_tls=cert[1])
    assert outcomes(delivery) == [Outcome.DELIVERED] and delivery.tls is not None
    assert box[0].sessions[0].auth == ("home", "s3cret")
    assert "STARTTLS" not in box[0].sessions[0].commands


def test_settings_for_a_domain_follow_the_config() -> None:
    config = parse_config(
        {
            "data_dir": "/x",
            "hostname": "mx.example.org",
            "outbound": {"tls_policies": ["bank.test=verify"], "timeouts": {"mail": 7}},
        }
    )
    s = ClientSettings.for_domain(config, "Bank.test")
    assert s.tls_policy == "verify" and s.helo_name == "mx.example.org" and s.timeouts.mail == 7
    assert ClientSettings.for_domain(config, "other.test").tls_policy == "opportunistic"


def test_control_characters_in_addresses_are_never_sent() -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> tuple[Delivery, Delivery]:
        box.append(server)
        bad_rcpt = await deliver(
            server.dest(), settings(), envelope("ok@r.test", "evil@r.test\r\nRSET"), MESSAGE
        )
        bad_sender = await deliver(
            server.dest(), settings(), replace(envelope(), sender="a@b.test\nRSET"), MESSAGE
        )
        return bad_rcpt, bad_sender

    bad_rcpt, bad_sender = scripted(Script(), body)
    assert outcomes(bad_rcpt) == [Outcome.DELIVERED, Outcome.FAILED]
    assert bad_rcpt.results[1].reply.status == "5.1.3" and not bad_rcpt.results[1].remote
    assert outcomes(bad_sender) == [Outcome.FAILED]
    assert bad_sender.results[0].reply.status == "5.1.7"
    for session in box[0].sessions:
        assert not any("RSET" in c or "evil" in c for c in session.commands)
    assert [c for c in box[0].sessions[1].commands if c.startswith(("MAIL", "RCPT"))] == []


def test_missing_ca_file_defers(cert: tuple[Path, ssl.SSLContext], tmp_path: Path) -> None:
    s = settings(tls_policy="verify", ca_file=str(tmp_path / "nonexistent.pem"))
    delivery = scripted(
        Script(tls=cert[1]), lambda srv: deliver(srv.dest(), s, envelope(), MESSAGE)
    )
    (r,) = delivery.results
    assert r.outcome is Outcome.DEFERRED and r.reply.status == "4.7.5" and "TLS" in r.diagnostic


@pytest.mark.parametrize(
    ("ehlo", "expected", "stage"),
    [
        (b"this is not SMTP\r\n", "4.4.2", "ehlo"),  # a malformed reply: drop the host
        (b"502 5.5.2 what?\r\n", "helo", "content"),  # EHLO unknown: HELO, then on
        (b"421 4.3.2 busy\r\n", "4.3.2", "ehlo"),
    ],
)
def test_ehlo_replies(ehlo: bytes, expected: str, stage: str) -> None:
    box: list[ScriptedServer] = []

    async def body(server: ScriptedServer) -> Delivery:
        box.append(server)
        return await deliver(server.dest(), settings(), envelope(), MESSAGE)

    (r,) = scripted(Script(ehlo_reply=ehlo), body).results
    assert r.stage == stage
    if expected == "helo":
        assert r.outcome is Outcome.DELIVERED
        assert [c.split()[0] for c in box[0].sessions[0].commands][:2] == ["EHLO", "HELO"]
    else:
        assert r.outcome is Outcome.DEFERRED and r.reply.status == expected
