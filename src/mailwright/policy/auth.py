"""Authentication for every protocol that logs users in: POP3, IMAP and SMTP submission.

One ``AuthThrottle`` — shared memory made before the worker processes are forked — counts
failed logins per client address and per user for every worker and every protocol, so
a guesser gains nothing by spreading attempts over POP3, IMAP and submission or over
workers. Each worker's ``Authenticator`` checks a username and password against the
store and consults that throttle.

Invariants:
- every failure looks the same to the client (unknown user, bad password, disabled,
  throttled, malformed); ``AuthResult.reason`` is for the log only;
- a failure waits ``AuthThrottle.delay_for`` before it is answered; a success is never
  delayed;
- an unknown or disabled user costs one argon2id verification, as a real user does, so
  the time of the answer does not tell which users exist;
- argon2id runs in a thread, at most ``parallel_verifies`` at once per process;
- the password never reaches a log line.

The throttle table:
- keys are ``ip:<address>`` (IPv6 by /64: one host is usually given a whole /64, so
  per-address counting of IPv6 would count nothing) and ``user:<address>`` lower-cased;
- a key's count is a leaky bucket: a failure adds one, and the count drains linearly at
  the key's cap per ``window`` (IP: ``max_ip_failures``, user: ``max_user_failures``).
  So a burst up to the cap is allowed, then one attempt per ``window / cap`` seconds; a
  shared address (NAT) whose users mistype now and then never fills its bucket;
- one slot is one 64-bit word, ``stamp << 20 | level``: the time of the last update in
  milliseconds (44 bits, half a millennium) and the count in sixteenths of a failure
  (20 bits, so it can drain smoothly; it saturates at 65535 failures). Count and time
  in one word, because a reader must never pair a count from one write with a time
  from another;
- slots hold no key: two keys hashed to one slot share a count, which makes both
  stricter (and a user's successful login, which empties the user's slot, forgets the
  other key's failures too). The hash is keyed with a secret drawn when the table is
  made (before the fork, so every worker hashes alike): an attacker cannot choose names
  or addresses that land on a victim's slot, or on his own.

Concurrency: no lock. Within a process the event loop runs one update at a time. Across
processes an update is one 8-byte load and one 8-byte store of an aligned word (neither
tears on x86-64 or AArch64), so two processes updating one slot at the same instant can
only lose one of the two updates: two failures count as one (looser by one), or a
failure overwrites a concurrent success's reset (the key keeps the count it had before
the success, plus one: stricter, and it drains). No other outcome exists: any word
decodes to a count of at most 65535 and a time, and a time in the future (a clock
stepped back, a torn word on some other machine) counts as nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import mmap
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailwright.core.address import Address, AddressError
from mailwright.core.log import event as log_event
from mailwright.metrics import meter
from mailwright.policy.password import hash_password, verify_password
from mailwright.store.api import Account, Accounts

log = logging.getLogger("mailwright.policy.auth")

# AuthResult.reason values (stable: log readers such as fail2ban filters match them).
MALFORMED = "malformed"
THROTTLED = "throttled"
UNKNOWN_USER = "unknown user"
DISABLED = "disabled"
BAD_PASSWORD = "bad password"

_FORBIDDEN = re.compile(r"[\x00\r\n]")
_LOGGED_USER_MAX = 256  # a username is logged; a huge one must not make a huge line

_UNIT = 16  # a slot counts sixteenths of a failure, so the bucket drains smoothly
_LEVEL_BITS = 20
_LEVEL_MAX = (1 << _LEVEL_BITS) - 1
_STAMP_MASK = (1 << (64 - _LEVEL_BITS)) - 1
_CAP_MAX = _LEVEL_MAX // _UNIT  # the largest count a slot can hold


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """How failed logins are slowed and refused. Defaults are for a small installation."""

    # A key's count drains at its cap per window: by default an address forgets one
    # failure every 45 s, a user every 90 s, and a full bucket empties in 15 minutes.
    window: float = 900.0
    free_failures: int = 3  # failures answered without delay
    base_delay: float = 1.0  # the first delay (after free_failures); it doubles per failure
    max_delay: float = 15.0  # delays stop growing here (clients time out at about a minute)
    max_ip_failures: int = 20  # at this count, logins from the address (IPv6: /64) are refused
    max_user_failures: int = 10  # at this count, logins as the user are refused
    slots: int = 65536  # table size: 8 bytes each, one table for every worker
    # argon2id holds 64 MiB while it verifies: bounded per process, or a flood of
    # logins is a flood of memory.
    parallel_verifies: int = 2

    def __post_init__(self) -> None:
        bounds = (
            ("window", self.window, 0.001, math.inf),  # the table's clock ticks in ms
            ("free_failures", self.free_failures, 0, math.inf),
            ("base_delay", self.base_delay, 0, math.inf),
            ("max_delay", self.max_delay, 0, math.inf),
            ("max_ip_failures", self.max_ip_failures, 1, _CAP_MAX),
            ("max_user_failures", self.max_user_failures, 1, _CAP_MAX),
            ("slots", self.slots, 1, math.inf),
            ("parallel_verifies", self.parallel_verifies, 1, math.inf),
        )
        for name, value, least, most in bounds:
            if not least <= value <= most:  # written so that NaN fails too
                raise ValueError(f"auth limit {name} must be in [{least}, {most}], not {value}")


def ip_key(ip: str) -> str:
    """The throttle key of a client address: IPv4 as is, IPv6 by its /64."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"ip:{ip}"  # not an IP address (a Unix socket peer): counted by its text
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
            return f"ip:{addr.ipv4_mapped}"
        net = ipaddress.IPv6Network((int(addr) >> 64 << 64, 64))
        return f"ip:{net}"
    return f"ip:{addr}"


def user_key(user: str) -> str:
    return f"user:{user.strip().lower()}"


class AuthThrottle:
    """Failed-login counts per address and per user, shared by every worker process.

    Make it in the parent before forking the workers (the table is an anonymous
    ``MAP_SHARED`` mapping and the hash secret is drawn here); every worker then uses
    the same object. No per-worker setup, nothing to clear when a worker dies.
    """

    def __init__(
        self, limits: AuthLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # The default clock is CLOCK_MONOTONIC: one clock for the whole machine, so the
        # workers' stamps compare, and an NTP step neither empties nor freezes the table.
        self.limits = limits or AuthLimits()
        self._clock = clock
        self._secret = secrets.token_bytes(16)
        self._mem = mmap.mmap(-1, self.limits.slots * 8)  # MAP_SHARED: survives fork
        self._table = memoryview(self._mem).cast("Q")
        self._window_ms = int(self.limits.window * 1000)
        # Drain per window, in sixteenths: each kind of key empties its full bucket in one window.
        self._ip_drain = self.limits.max_ip_failures * _UNIT
        self._user_drain = self.limits.max_user_failures * _UNIT

    def _slot(self, key: str) -> int:
        digest = hashlib.blake2b(
            key.encode("utf-8", "surrogatepass"), key=self._secret, digest_size=8
        ).digest()
        return int.from_bytes(digest, "little") % self.limits.slots

    def _buckets(self, ip: str | None, user: str | None) -> list[tuple[int, int, int]]:
        """(slot, drain per window, cap) of the address's key and the user's, if given."""
        lim = self.limits
        out = []
        if ip is not None:
            out.append((self._slot(ip_key(ip)), self._ip_drain, lim.max_ip_failures * _UNIT))
        if user is not None:
            out.append(
                (self._slot(user_key(user)), self._user_drain, lim.max_user_failures * _UNIT)
            )
        return out

    def _now(self) -> int:
        return int(self._clock() * 1000) & _STAMP_MASK

    def _level(self, slot: int, drain: int, now: int) -> int:
        """The slot's count at ``now``, in sixteenths, after draining."""
        word = self._table[slot]
        stamp = word >> _LEVEL_BITS
        if stamp > now:
            return 0  # from the future: the clock stepped back (or a torn word); forget it
        return max(0, (word & _LEVEL_MAX) - (now - stamp) * drain // self._window_ms)

    def _add(self, slot: int, drain: int, now: int, delta: int) -> None:
        level = min(_LEVEL_MAX, max(0, self._level(slot, drain, now) + delta))
        self._table[slot] = (now << _LEVEL_BITS) | level

    def failures(self, ip: str, user: str | None = None) -> int:
        """The larger count, in whole failures, of the address's key and the user's."""
        now = self._now()
        return max(self._level(s, d, now) for s, d, _ in self._buckets(ip, user)) // _UNIT

    def blocked(self, ip: str, user: str | None = None) -> bool:
        """Refuse the attempt without checking the password: one more failure would take
        the address's or the user's count past its cap. After a burst to the cap, that
        allows one attempt per ``window / cap`` seconds, the drain of a whole failure."""
        now = self._now()
        return any(self._level(s, d, now) + _UNIT > cap for s, d, cap in self._buckets(ip, user))

    def delay_for(self, ip: str, user: str | None = None) -> float:
        """Seconds a failed attempt waits before its answer: 0 for the first
        ``free_failures``, then ``base_delay`` doubling per failure up to ``max_delay``."""
        lim = self.limits
        over = self.failures(ip, user) - lim.free_failures
        if over <= 0:
            return 0.0
        return min(lim.max_delay, lim.base_delay * 2.0 ** min(over - 1, 32))

    def failed(self, ip: str | None, user: str | None = None) -> None:
        """Count one failure against the address and the user (either may be None)."""
        now = self._now()
        for slot, drain, _ in self._buckets(ip, user):
            self._add(slot, drain, now, _UNIT)

    def succeeded(self, user: str) -> None:
        """The user proved the password: forget the user's failures. The address keeps
        its count: one valid account must not license guessing at every other one."""
        for slot, _, _ in self._buckets(None, user):
            self._table[slot] = 0

    def refund(self, ip: str | None, user: str | None = None) -> None:
        """Take back one failure counted for an attempt that was never decided."""
        now = self._now()
        for slot, drain, _ in self._buckets(ip, user):
            self._add(slot, drain, now, -_UNIT)


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    account: Account | None = None  # set when ok
    reason: str = ""  # why it failed, for the log only (one of the constants above)


def is_disabled(password_hash: str) -> bool:
    """An account nobody may log in as. The store has no flag for it: as in
    /etc/shadow, an empty hash or one starting with ``!`` locks the account."""
    return not password_hash or password_hash.startswith("!")


def login_key(username: str) -> str | None:
    """The account key a username names, or None.

    A username is a full address (``local@domain``), surrounding white space ignored;
    it is looked up by ``Address.key`` (local part and domain lower-cased), the form
    every account is stored under. A bare local part names nothing: it would be
    ambiguous across domains.
    """
    try:
        return Address.parse(username.strip(), utf8=True).key
    except AddressError:
        return None


class LoginCache:
    """Recent successful logins, so that a client that logs in every minute (POP3 polling,
    IMAP reconnecting) costs one argon2id verification per ``ttl``, not one per login.
    Dovecot's auth cache does the same.

    Shared memory made before the fork, like the throttle: a slot per user (keyed hash)
    holds an expiry time and HMAC-SHA256(secret, user, stored hash, password). A login
    hits only with the very password, and only while the account's stored hash is the one
    that was verified (``user passwd`` invalidates at once). Only successes are cached, so
    guessing is never faster. Slots are written without a lock: a torn slot, or two users
    sharing one, can only miss (the digest must match exactly), never let a login in.
    """

    _SLOT = 40  # 8 bytes expiry (ms, monotonic clock) + 32 bytes digest

    def __init__(
        self,
        *,
        slots: int = 16384,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._slots = slots
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._mem = mmap.mmap(-1, slots * self._SLOT)  # MAP_SHARED: survives fork

    def _place(self, user: str, stored_hash: str, password: str) -> tuple[int, bytes]:
        index = hmac.new(self._secret, user.encode(), hashlib.sha256).digest()
        slot = int.from_bytes(index[:8], "big") % self._slots
        material = b"\0".join((user.encode(), stored_hash.encode(), password.encode()))
        return slot * self._SLOT, hmac.new(self._secret, material, hashlib.sha256).digest()

    def hit(self, user: str, stored_hash: str, password: str) -> bool:
        if self.ttl <= 0:
            return False
        at, digest = self._place(user, stored_hash, password)
        expiry = int.from_bytes(self._mem[at : at + 8], "little")
        if expiry <= int(self._clock() * 1000):
            return False
        return hmac.compare_digest(self._mem[at + 8 : at + self._SLOT], digest)

    def remember(self, user: str, stored_hash: str, password: str) -> None:
        if self.ttl <= 0:
            return
        at, digest = self._place(user, stored_hash, password)
        expiry = int((self._clock() + self.ttl) * 1000)
        self._mem[at + 8 : at + self._SLOT] = digest
        self._mem[at : at + 8] = expiry.to_bytes(8, "little")


class Authenticator:
    """Checks a username and password: one per worker process, over a shared throttle."""

    def __init__(
        self,
        accounts: Accounts,
        throttle: AuthThrottle,
        *,
        verify: Callable[[str, str], bool] = verify_password,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        dummy_hash: str | None = None,
        cache: LoginCache | None = None,
    ) -> None:
        """``dummy_hash`` is what an unknown user's password is verified against; by
        default a hash of a random password made here (one argon2id hashing, so tens of
        milliseconds), with the parameters of every new hash, so it costs what a real
        verification costs."""
        self._accounts = accounts
        self._throttle = throttle
        self._verify = verify
        self._sleep = sleep
        self._dummy_hash = dummy_hash or hash_password(secrets.token_urlsafe(32))
        self._verifying = asyncio.Semaphore(throttle.limits.parallel_verifies)
        self._cache = cache

    async def authenticate(
        self, username: str, password: str, ip: str, *, conn: str = "", protocol: str = "unknown"
    ) -> AuthResult:
        """Check ``username``/``password`` from client address ``ip``; ``conn`` is the
        connection id for the log line, ``protocol`` the label of a failure's metric.

        A failure returns only after its delay. Store errors propagate (the caller's
        command boundary answers them as temporary failures) and are not counted.
        """
        throttle = self._throttle
        if _FORBIDDEN.search(username) or _FORBIDDEN.search(password):
            # No client sends these in a real credential; they are an attempt to split a
            # log line or a lookup. Refused before anything sees them, counted to the address.
            throttle.failed(ip)
            return await self._fail(conn, ip, None, username, MALFORMED, protocol)
        address = login_key(username)
        # Names that are not addresses, and unknown users, are counted like real users:
        # otherwise the throttle's behaviour would tell which users exist.
        user = address or username.strip()
        if throttle.blocked(ip, user):
            # Not counted: the owner's own client, retrying with the right password, would
            # otherwise keep the account locked for as long as it keeps retrying.
            return await self._fail(conn, ip, user, user, THROTTLED, protocol)
        # The user's count goes up before the check, with no await since the test above:
        # attempts at one user in flight at once (other connections, other workers) see
        # each other, so parallel connections cannot each get a guess past the cap. The
        # address is counted once the attempt has failed: many users behind one address
        # (NAT, a webmail host) log in at once, and must not lock each other out.
        throttle.failed(None, user)
        try:
            account = await self._accounts.get_account(address) if address else None
            stored, reason = self._dummy_hash, UNKNOWN_USER
            if account is not None:
                if is_disabled(account.password_hash):
                    reason = DISABLED
                else:
                    stored, reason = account.password_hash, BAD_PASSWORD
            cache = self._cache if reason == BAD_PASSWORD else None
            if cache is not None and cache.hit(user, stored, password):
                ok = True
            else:
                async with self._verifying:
                    # argon2 releases the GIL: in a thread it keeps the loop serving others.
                    ok = await asyncio.to_thread(self._verify, stored, password)
                if ok and cache is not None:
                    cache.remember(user, stored, password)
        except Exception:
            # The store failed, so nothing was decided; counting it would, during an
            # outage, lock out every address whose clients poll. Re-raised for the
            # caller's boundary. (A cancelled attempt stays counted: a client must not
            # escape the count by hanging up before the answer.)
            throttle.refund(None, user)
            raise
        if ok and reason == BAD_PASSWORD:
            throttle.succeeded(user)
            return AuthResult(True, account)
        throttle.failed(ip)
        return await self._fail(conn, ip, user, user, reason, protocol)

    async def _fail(
        self, conn: str, ip: str, user: str | None, shown: str, reason: str, protocol: str
    ) -> AuthResult:
        delay = self._throttle.delay_for(ip, user)
        meter.auth_failed(protocol)
        log_event(
            log,
            logging.WARNING,
            "auth.failed",
            conn=conn,
            ip=ip,
            user=shown[:_LOGGED_USER_MAX],
            reason=reason,
            delay=delay,
        )
        if delay > 0:
            await self._sleep(delay)
        return AuthResult(False, None, reason)


def plaintext_allowed(policy: str, ip: str) -> bool:
    """May a password cross an unencrypted connection from ``ip``? ``policy`` is a
    listener's ``allow_plaintext``: "always", "loopback" (127.0.0.0/8, ::1) or "never"."""
    if policy == "always":
        return True
    if policy == "loopback":
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(ip).is_loopback
    return False
