"""Login checks and the failed-login throttle shared by POP3, IMAP and submission (policy/auth.py).

Time is a fake clock and delays go to a recording sleep: nothing here measures time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from mailwright.core.log import LogfmtFormatter
from mailwright.policy.auth import (
    _CAP_MAX,
    BAD_PASSWORD,
    DISABLED,
    MALFORMED,
    THROTTLED,
    UNKNOWN_USER,
    Authenticator,
    AuthLimits,
    AuthResult,
    AuthThrottle,
    LoginCache,
    ip_key,
    is_disabled,
    login_key,
    user_key,
)
from mailwright.policy.password import hash_password, verify_password
from mailwright.store.api import Accounts
from mailwright.store.sqlite import SqliteStore

T = TypeVar("T")

IP = "192.0.2.1"
ALICE = "alice@example.test"
SECRET = "correct horse battery staple"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """A sleep that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def plain_verify(stored: str, password: str) -> bool:
    """A verification without argon2's cost, for tests about everything around it."""
    return stored == f"plain:{password}"


def run(tmp_path: Path, fn: Callable[[SqliteStore], Awaitable[T]]) -> T:
    """Run ``fn`` against a real store on disk with the domain example.test."""

    async def go() -> T:
        store = await asyncio.to_thread(SqliteStore, tmp_path / "data")
        try:
            await store.add_domain("example.test")
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def dummy_hash() -> str:
    return hash_password("never the password of anyone")  # argon2 hashings: once a module


@pytest.fixture(scope="module")
def secret_hash() -> str:
    return hash_password(SECRET)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    kept: list[logging.LogRecord] = []
    logger = logging.getLogger("mailwright.policy.auth")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "ip:192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "ip:2001:db8:1:2::/64"),  # IPv6 by /64: one host has many
        ("2001:DB8:1:2::ffff", "ip:2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "ip:192.0.2.1"),  # an IPv4 client on a dual-stack socket
        ("fe80::1%eth0", "ip:fe80::/64"),
        ("/run/mailwright.sock", "ip:/run/mailwright.sock"),  # not an IP: its text
    ],
)
def test_ip_key(ip: str, key: str) -> None:
    assert ip_key(ip) == key


@pytest.mark.parametrize(
    ("username", "key"),
    [
        (ALICE, ALICE),
        ("  Alice@EXAMPLE.Test\t", ALICE),  # stored under Address.key: lower-cased, trimmed
        ("alice", None),  # a bare local part names nothing
        ("", None),
        ("alice@", None),
        ("a b@example.test", None),
    ],
)
def test_login_key(username: str, key: str | None) -> None:
    assert login_key(username) == key


def test_user_key_ignores_case_and_space() -> None:
    assert user_key(" Alice@Example.TEST ") == "user:alice@example.test"


@pytest.mark.parametrize(
    ("stored", "disabled"), [("", True), ("!$argon2id$x", True), ("$argon2id$x", False)]
)
def test_is_disabled(stored: str, disabled: bool) -> None:
    assert is_disabled(stored) is disabled


# -- limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", 0.0),
        ("window", float("nan")),
        ("free_failures", -1),
        ("base_delay", -1.0),
        ("max_delay", -0.5),
        ("max_ip_failures", 0),
        ("max_user_failures", _CAP_MAX + 1),
        ("slots", 0),
        ("parallel_verifies", 0),
    ],
)
def test_limits_refuse_impossible_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        AuthLimits(**{field: value})


# -- throttle --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 0.0), (3, 0.0), (4, 1.0), (5, 2.0), (6, 4.0), (7, 8.0), (8, 15.0), (19, 15.0)],
)
def test_delay_grows_after_the_free_failures_up_to_the_cap(failures: int, delay: float) -> None:
    t = AuthThrottle(AuthLimits(), clock=Clock())
    for _ in range(failures):
        t.failed(IP)
    assert t.failures(IP) == failures
    assert t.delay_for(IP) == delay


def test_delay_follows_the_larger_of_address_and_user() -> None:
    t = AuthThrottle(AuthLimits(free_failures=0), clock=Clock())
    for n in range(3):
        t.failed(f"198.51.100.{n}", ALICE)  # three addresses, one user
    assert t.delay_for("203.0.113.1", ALICE) == 4.0
    assert t.delay_for("198.51.100.0") == 1.0
    assert t.delay_for("203.0.113.1", "bob@example.test") == 0.0


def test_user_cap_holds_across_addresses() -> None:
    t = AuthThrottle(AuthLimits(), clock=Clock())
    for n in range(9):
        t.failed(f"198.51.100.{n}", ALICE)
    assert not t.blocked("203.0.113.1", ALICE)
    t.failed("198.51.100.9", ALICE)
    assert t.blocked("203.0.113.1", ALICE)  # the tenth: refused from anywhere
    assert not t.blocked("203.0.113.1", "bob@example.test")


def test_address_cap_holds_across_users_and_a_whole_ipv6_64() -> None:
    t = AuthThrottle(AuthLimits(), clock=Clock())
    for n in range(20):
        t.failed(f"2001:db8:7:7::{n + 1:x}", f"user{n}@example.test")
    assert t.blocked("2001:db8:7:7:ffff::1", "new@example.test")
    assert t.blocked("2001:db8:7:7::1")
    assert not t.blocked("2001:db8:7:8::1", "new@example.test")  # the next /64


def test_counts_drain_one_failure_per_window_over_cap() -> None:
    clock = Clock()
    t = AuthThrottle(AuthLimits(), clock=clock)  # user: 10 per 900 s, one every 90 s
    for n in range(10):
        t.failed(f"198.51.100.{n}", ALICE)
    assert t.blocked("203.0.113.1", ALICE)
    clock.now += 89
    assert t.blocked("203.0.113.1", ALICE)
    clock.now += 1  # a whole failure has drained: one more attempt may be made
    assert not t.blocked("203.0.113.1", ALICE)
    assert t.failures("203.0.113.1", ALICE) == 9
    t.failed("203.0.113.1", ALICE)
    assert t.blocked("203.0.113.1", ALICE)
    clock.now += 900
    assert t.failures("203.0.113.1", ALICE) == 0


def test_success_forgets_the_user_but_not_the_address() -> None:
    t = AuthThrottle(AuthLimits(), clock=Clock())
    for _ in range(5):
        t.failed(IP, ALICE)
    t.succeeded(ALICE)
    assert t.failures("203.0.113.1", ALICE) == 0
    assert t.failures(IP) == 5


def test_many_users_behind_one_address_log_in_at_once(tmp_path: Path) -> None:
    # Fifty clients behind one address (NAT, a webmail host, the POP3 bench) log in at
    # the same moment: attempts in flight count against their users only, so none is
    # refused for the others' attempts.
    async def go(store: SqliteStore) -> list[bool]:
        users = [f"u{i}@example.test" for i in range(50)]
        for user in users:
            await store.add_account(user, "plain:secret")
        auth = Authenticator(
            store,
            AuthThrottle(clock=Clock()),
            verify=plain_verify,
            sleep=Sleeps(),
            dummy_hash="plain:",
        )
        results = await asyncio.gather(*(auth.authenticate(u, "secret", IP) for u in users))
        return [r.ok for r in results]

    assert all(run(tmp_path, go))


def test_refund_takes_back_one_failure_of_each_key() -> None:
    t = AuthThrottle(AuthLimits(), clock=Clock())
    t.failed(IP, ALICE)
    t.failed(IP, ALICE)
    t.refund(IP, ALICE)
    assert t.failures(IP) == 1
    assert t.failures("203.0.113.1", ALICE) == 1
    t.refund(IP, ALICE)
    t.refund(IP, ALICE)  # never below zero
    assert t.failures(IP, ALICE) == 0


def test_a_clock_stepping_back_forgets_rather_than_breaks() -> None:
    clock = Clock(5000.0)
    t = AuthThrottle(AuthLimits(), clock=clock)
    for _ in range(20):
        t.failed(IP)
    clock.now = 100.0  # stamps now lie in the future: looser, never an error
    assert t.failures(IP) == 0
    assert not t.blocked(IP)
    t.failed(IP)
    assert t.failures(IP) == 1


def test_counts_saturate_instead_of_overflowing() -> None:
    limits = AuthLimits(max_ip_failures=_CAP_MAX, max_user_failures=_CAP_MAX, slots=1)
    t = AuthThrottle(limits, clock=Clock())
    for _ in range(_CAP_MAX // 2 + 3):
        t.failed(IP, ALICE)  # one slot for both keys: two counts a call
    assert t.failures(IP) == _CAP_MAX
    assert t.blocked(IP)


def test_a_hash_collision_only_makes_it_stricter() -> None:
    t = AuthThrottle(AuthLimits(slots=1), clock=Clock())  # every key in one slot
    for _ in range(5):
        t.failed(IP, ALICE)  # ten counts in the one slot (address and user)
    assert t.blocked("203.0.113.1", "bob@example.test")


def test_worker_processes_share_the_counts_and_races_only_lose_some() -> None:
    # Two forked workers fail the same keys at once, with no lock; the parent sees their
    # failures. Lost updates may make the count smaller, never larger or garbled.
    limits = AuthLimits(max_ip_failures=_CAP_MAX, max_user_failures=_CAP_MAX)
    t = AuthThrottle(limits, clock=Clock())  # a fixed time: nothing drains
    each = 3000
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(each):
                    t.failed(IP, ALICE)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    for count in (t.failures(IP), t.failures("203.0.113.1", ALICE)):
        assert each <= count <= 2 * each
    assert t.blocked(IP, ALICE) is False  # caps at their maximum, not reached
    assert t.delay_for(IP) == limits.max_delay


# -- authenticator over a real store ---------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "reason", "verified"),
    [
        (ALICE, SECRET, "", "alice"),
        ("  Alice@EXAMPLE.test ", SECRET, "", "alice"),
        (ALICE, "wrong", BAD_PASSWORD, "alice"),
        (ALICE, "", BAD_PASSWORD, "alice"),
        ("nobody@example.test", SECRET, UNKNOWN_USER, "dummy"),
        ("alice", SECRET, UNKNOWN_USER, "dummy"),  # a bare local part is not looked up
        ("locked@example.test", SECRET, DISABLED, "dummy"),
        ("alice@example.test\r\nX", SECRET, MALFORMED, None),
        (ALICE, "correct\x00horse", MALFORMED, None),
        ("\nalice@example.test", SECRET, MALFORMED, None),  # checked before trimming
        ("blocked@example.test", SECRET, THROTTLED, None),
    ],
)
def test_authenticate(
    tmp_path: Path,
    dummy_hash: str,
    secret_hash: str,
    username: str,
    password: str,
    reason: str,
    verified: str | None,
) -> None:
    async def go(store: SqliteStore) -> tuple[AuthResult, list[str], str]:
        alice = secret_hash
        await store.add_account(ALICE, alice)
        await store.add_account("locked@example.test", "!" + secret_hash)
        await store.add_account("blocked@example.test", secret_hash)
        throttle = AuthThrottle(AuthLimits(), clock=Clock())
        for n in range(10):
            throttle.failed(f"198.51.100.{n}", "blocked@example.test")
        seen: list[str] = []

        def spy(stored: str, pw: str) -> bool:
            seen.append(stored)
            return verify_password(stored, pw)

        auth = Authenticator(store, throttle, verify=spy, sleep=Sleeps(), dummy_hash=dummy_hash)
        return await auth.authenticate(username, password, IP), seen, alice

    result, seen, alice = run(tmp_path, go)
    assert result.reason == reason
    assert result.ok is (reason == "")
    assert (result.account is not None) is result.ok
    if result.account is not None:
        assert result.account.address == ALICE
    # An unknown or disabled user still costs one argon2 verification; a refused
    # attempt (malformed, throttled) costs none.
    expected = {"alice": [alice], "dummy": [dummy_hash], None: []}[verified]
    assert seen == expected


def test_unknown_user_is_checked_against_a_hash_made_once(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> list[str]:
        seen: list[str] = []

        def spy(stored: str, pw: str) -> bool:
            seen.append(stored)
            return False

        auth = Authenticator(store, AuthThrottle(), verify=spy, sleep=Sleeps())
        for user in ("nobody@example.test", "nemo@example.test"):
            assert (await auth.authenticate(user, SECRET, IP)).reason == UNKNOWN_USER
        return seen

    seen = run(tmp_path, go)
    assert seen[0].startswith("$argon2id$")  # costs what a real account's check costs
    assert seen[0] == seen[1]


def test_failures_wait_and_successes_do_not(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[list[float], list[bool]]:
        await store.add_account(ALICE, "plain:secret")
        sleeps = Sleeps()
        limits = AuthLimits(free_failures=1, max_user_failures=100, max_ip_failures=100)
        auth = Authenticator(
            store,
            AuthThrottle(limits, clock=Clock()),
            verify=plain_verify,
            sleep=sleeps,
            dummy_hash="plain:",
        )
        attempts = ["wrong", "wrong", "wrong", "wrong", "secret", "wrong"]
        oks = [(await auth.authenticate(ALICE, pw, IP)).ok for pw in attempts]
        return sleeps.delays, oks

    delays, oks = run(tmp_path, go)
    assert oks == [False, False, False, False, True, False]
    # Failures 1..4 wait 0, 1, 2, 4 s. The success waits nothing and forgets the user's
    # failures but not the address's: the last failure is the address's fifth, 8 s.
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_parallel_attempts_cannot_pass_the_cap(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[list[str], int]:
        await store.add_account(ALICE, "plain:secret")
        calls: list[str] = []

        def verify(stored: str, pw: str) -> bool:
            calls.append(pw)
            return plain_verify(stored, pw)

        throttle = AuthThrottle(AuthLimits(max_user_failures=3), clock=Clock())
        auth = Authenticator(store, throttle, verify=verify, sleep=Sleeps(), dummy_hash="x")
        results = await asyncio.gather(
            *(auth.authenticate(ALICE, f"guess{n}", f"198.51.100.{n}") for n in range(10))
        )
        return [r.reason for r in results], len(calls)

    reasons, verified = run(tmp_path, go)
    assert verified == 3  # each attempt was counted before its check, so the others saw it
    assert reasons.count(BAD_PASSWORD) == 3
    assert reasons.count(THROTTLED) == 7


def test_auth_failed_is_logged_without_the_password(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    async def go(store: SqliteStore) -> None:
        await store.add_account(ALICE, "plain:secret")
        auth = Authenticator(
            store, AuthThrottle(), verify=plain_verify, sleep=Sleeps(), dummy_hash="plain:"
        )
        await auth.authenticate(" Alice@Example.test", "hunter2-wrong", IP, conn="c1")
        await auth.authenticate("x\r\nevent=forged", "hunter2-line\n", IP)
        assert (await auth.authenticate(ALICE, "secret", IP)).ok  # a success logs nothing here

    run(tmp_path, go)
    assert [r.getMessage() for r in records] == ["auth.failed", "auth.failed"]
    fields = [cast(dict[str, Any], r.__dict__["fields"]) for r in records]
    assert fields[0] == {
        "conn": "c1",
        "ip": IP,
        "user": ALICE,
        "reason": BAD_PASSWORD,
        "delay": 0.0,
    }
    assert fields[1]["reason"] == MALFORMED
    lines = [LogfmtFormatter().format(r) for r in records]
    for line in lines:
        assert "hunter2" not in line
        assert "\r" not in line and "\n" not in line  # the forged line stays inside quotes
    for r in records:
        assert "hunter2" not in repr(r.__dict__)


def test_the_event_loop_runs_while_a_password_is_verified(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def verify(stored: str, pw: str) -> bool:
        started.set()
        # Released by a coroutine: if this ran on the event loop, nothing could release it,
        # and after the guard's timeout the login would fail.
        return release.wait(30) and plain_verify(stored, pw)

    async def go(store: SqliteStore) -> AuthResult:
        await store.add_account(ALICE, "plain:secret")
        auth = Authenticator(store, AuthThrottle(), verify=verify, sleep=Sleeps(), dummy_hash="x")
        attempt = asyncio.create_task(auth.authenticate(ALICE, "secret", IP))
        await asyncio.to_thread(started.wait, 30)
        release.set()  # this coroutine made progress while the check was running
        return await attempt

    assert run(tmp_path, go).ok


def test_verifications_run_at_most_parallel_verifies_at_once(tmp_path: Path) -> None:
    lock, release = threading.Lock(), threading.Event()
    active, most = [0], [0]
    first = threading.Event()

    def verify(stored: str, pw: str) -> bool:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        first.set()
        release.wait(30)
        with lock:
            active[0] -= 1
        return plain_verify(stored, pw)

    async def go(store: SqliteStore) -> list[bool]:
        await store.add_account(ALICE, "plain:secret")
        throttle = AuthThrottle(AuthLimits(parallel_verifies=1))
        auth = Authenticator(store, throttle, verify=verify, sleep=Sleeps(), dummy_hash="x")
        tasks = [
            asyncio.create_task(auth.authenticate(ALICE, "secret", f"198.51.100.{n}"))
            for n in range(3)
        ]
        await asyncio.to_thread(first.wait, 30)
        release.set()
        return [r.ok for r in await asyncio.gather(*tasks)]

    assert run(tmp_path, go) == [True, True, True]
    assert most[0] == 1


def test_a_store_failure_propagates_and_is_not_counted() -> None:
    class BrokenAccounts:
        async def get_account(self, address: str) -> None:
            raise RuntimeError("database is locked")

    async def go() -> AuthThrottle:
        throttle = AuthThrottle(AuthLimits(), clock=Clock())
        auth = Authenticator(
            cast(Accounts, BrokenAccounts()),
            throttle,
            verify=plain_verify,
            sleep=Sleeps(),
            dummy_hash="x",
        )
        with pytest.raises(RuntimeError, match="locked"):
            await auth.authenticate(ALICE, "secret", IP)
        return throttle

    throttle = asyncio.run(go())
    assert throttle.failures(IP, ALICE) == 0


def test_a_client_hanging_up_mid_check_stays_counted(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def verify(stored: str, pw: str) -> bool:
        started.set()
        release.wait(30)
        return plain_verify(stored, pw)

    async def go(store: SqliteStore) -> AuthThrottle:
        await store.add_account(ALICE, "plain:secret")
        throttle = AuthThrottle(AuthLimits(), clock=Clock())
        auth = Authenticator(store, throttle, verify=verify, sleep=Sleeps(), dummy_hash="x")
        attempt = asyncio.create_task(auth.authenticate(ALICE, "guess", IP))
        await asyncio.to_thread(started.wait, 30)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        release.set()
        return throttle

    assert run(tmp_path, go).failures(IP, ALICE) == 1


# -- the login cache ------------------------------------------------------------------


def test_login_cache_hits_only_the_same_password_and_stored_hash() -> None:
    clock = Clock()
    cache = LoginCache(ttl=60, clock=clock)
    assert not cache.hit(ALICE, "hash-1", SECRET)
    cache.remember(ALICE, "hash-1", SECRET)
    assert cache.hit(ALICE, "hash-1", SECRET)
    assert not cache.hit(ALICE, "hash-1", SECRET + "x")  # another password
    assert not cache.hit(ALICE, "hash-2", SECRET)  # the password was changed
    assert not cache.hit("bob@example.test", "hash-1", SECRET)  # another user
    clock.now += 61
    assert not cache.hit(ALICE, "hash-1", SECRET)  # expired


def test_login_cache_with_no_ttl_remembers_nothing() -> None:
    cache = LoginCache(ttl=0)
    cache.remember(ALICE, "hash", SECRET)
    assert not cache.hit(ALICE, "hash", SECRET)


def test_login_cache_users_sharing_a_slot_only_miss() -> None:
    cache = LoginCache(slots=1, ttl=60, clock=Clock())
    cache.remember(ALICE, "h", SECRET)
    cache.remember("bob@example.test", "h", SECRET)
    assert cache.hit("bob@example.test", "h", SECRET)
    assert not cache.hit(ALICE, "h", SECRET)  # evicted: verified again, never let in wrongly


def test_login_cache_is_shared_with_forked_workers() -> None:
    cache = LoginCache(ttl=60)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        cache.remember(ALICE, "h", SECRET)
        os._exit(0)
    os.waitpid(pid, 0)
    assert cache.hit(ALICE, "h", SECRET)


def test_a_cached_login_skips_the_verification_and_a_wrong_one_does_not(tmp_path: Path) -> None:
    async def go(store: SqliteStore) -> tuple[list[str], list[bool]]:
        await store.add_account(ALICE, "plain:secret")
        checked: list[str] = []

        def spy(stored: str, pw: str) -> bool:
            checked.append(pw)
            return plain_verify(stored, pw)

        auth = Authenticator(
            store,
            AuthThrottle(clock=Clock()),
            verify=spy,
            sleep=Sleeps(),
            dummy_hash="plain:",
            cache=LoginCache(ttl=60),
        )
        attempts = ["secret", "secret", "wrong", "secret"]
        oks = [(await auth.authenticate(ALICE, pw, IP)).ok for pw in attempts]
        await store.set_password(ALICE, "plain:new")
        oks.append((await auth.authenticate(ALICE, "secret", IP)).ok)
        return checked, oks

    checked, oks = run(tmp_path, go)
    assert oks == [True, True, False, True, False]
    # Verified: the first login, the wrong password, and the login after the change.
    assert checked == ["secret", "wrong", "secret"]
