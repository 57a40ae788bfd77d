"""Sign-in under attack (issue 17, point 17): concurrent guesses are counted before they
are verified, Argon2 runs in a pool of its own (an operator's API stays quick), and a
guesser behind a shared address does not lock out the people who work behind it."""

from __future__ import annotations

import asyncio
import time

from webtest import PASSWORD, Client, make_token

from hub.auth.ratelimit import ACCOUNT_SPREAD, LoginLimiter


# -- the limiter, pure ---------------------------------------------------------------------------
def test_an_attempt_is_counted_before_it_is_verified():
    lim = LoginLimiter(per_account=5, per_address=20)
    verdicts = [lim.attempt("op", "10.0.0.1", 100.0) for _ in range(60)]
    assert sum(v.allowed for v in verdicts) == 5
    assert {v.scope for v in verdicts if not v.allowed} == {"account"}


def test_a_success_gives_its_slot_back_and_a_busy_hub_is_no_failure():
    lim = LoginLimiter(per_account=2, per_address=3)
    v = lim.attempt("op", "10.0.0.1", 1.0)
    lim.succeeded("op", "10.0.0.1", v, 1.0)
    v = lim.attempt("disp", "10.0.0.1", 2.0)
    lim.release("disp", "10.0.0.1", v)
    assert lim.attempt("x1", "10.0.0.1", 3.0).allowed
    assert lim.attempt("x2", "10.0.0.1", 3.0).allowed
    assert lim.attempt("x3", "10.0.0.1", 3.0).allowed
    assert lim.attempt("x4", "10.0.0.1", 3.0).scope == "address"  # three real failures


def test_a_spray_from_one_address_spares_people_who_sign_in_there():
    lim = LoginLimiter(per_account=5, per_address=20)
    v = lim.attempt("op", "10.0.0.1", 0.0)
    lim.succeeded("op", "10.0.0.1", v, 0.0)
    for i in range(20):
        assert lim.attempt(f"guess-{i}", "10.0.0.1", 1.0).allowed
    assert lim.check("disp", "10.0.0.1", 2.0).scope == "address"  # never signed in here
    assert lim.check("op", "10.0.0.1", 2.0).allowed  # signs in here: not locked out
    assert lim.check("disp", "10.0.0.2", 2.0).allowed  # another address is not touched
    assert lim.check("guess-0", "10.0.0.1", 901.0 + 1).allowed  # the window passes


def test_guesses_from_many_addresses_are_bounded_but_the_owner_keeps_signing_in():
    lim = LoginLimiter(per_account=5, per_address=20)
    v = lim.attempt("op", "office", 0.0)
    lim.succeeded("op", "office", v, 0.0)
    allowed = sum(lim.attempt("op", f"bot-{i}", 1.0).allowed for i in range(100))
    assert allowed == 5 * ACCOUNT_SPREAD
    assert lim.check("op", "bot-new", 2.0).scope == "account"
    assert lim.check("op", "office", 2.0).allowed


# -- the hub ------------------------------------------------------------------------------------------
async def _form_token(c: Client) -> str:
    return await c.login_form_token()


async def _guess(c: Client, token: str, username: str, password: str = "wrong-password-1") -> int:
    r = await c.post("/login", data={"username": username, "password": password,
                                     "csrf_token": token, "next": "/"})
    return r.status


async def test_sixty_concurrent_guesses_verify_at_most_the_limit(hub):
    from hub.web.app import SECURITY_KEY

    checker = hub._runner.app[SECURITY_KEY].passwords  # the app the hub serves
    attacker, person = Client(hub), Client(hub)
    try:
        token = await _form_token(attacker)
        before = checker.verified
        statuses = await asyncio.gather(*(_guess(attacker, token, "op") for _ in range(60)))
        limit = hub.config.web.login_limits.per_account
        assert statuses.count(401) == limit and statuses.count(429) == 60 - limit, statuses
        assert checker.verified - before == limit
        # the right password for another account, from the same address, still works
        assert (await person.login("disp")).status == 303
    finally:
        await attacker.close()
        await person.close()


async def test_an_operators_api_stays_quick_during_a_sign_in_flood(hub):
    """Sixty concurrent guesses at sixty names: the address limit lets twenty through
    to Argon2, which runs in its own pool; the API's reads do not queue behind them."""
    attacker, api = Client(hub), Client(hub)
    op = await make_token(hub, "operator")
    try:
        token = await _form_token(attacker)
        flood = asyncio.gather(*(_guess(attacker, token, f"nobody-{i}") for i in range(60)))
        await asyncio.sleep(0.05)
        worst = 0.0
        for _ in range(5):
            start = time.perf_counter()
            r = await api.get("/api/v1/cases", token=op)
            worst = max(worst, time.perf_counter() - start)
            assert r.status == 200
        statuses = await flood
        # at most the address limit verified; past the checker's queue some were told 'busy'
        assert set(statuses) <= {401, 429}
        assert 0 < statuses.count(401) <= hub.config.web.login_limits.per_address
        assert worst < 1.0, f"the operator's API took {worst:.2f} s during the flood"
    finally:
        await attacker.close()
        await api.close()


async def test_people_who_sign_in_behind_a_sprayed_address_are_not_locked_out(hub):
    regular, attacker, newcomer = Client(hub), Client(hub), Client(hub)
    try:
        assert (await regular.login("admin")).status == 303  # works from this address daily
        token = await _form_token(attacker)
        for batch in range(4):  # ten at a time: within the checker's queue, all counted
            await asyncio.gather(*(_guess(attacker, token, f"name-{batch}-{i}") for i in range(10)))
        again = Client(hub)
        try:
            assert (await again.login("admin", PASSWORD)).status == 303
        finally:
            await again.close()
        r = await newcomer.login("disp")  # never signed in from here: the spray blocks it
        assert r.status == 429 and "your address" in r.text
    finally:
        for c in (regular, attacker, newcomer):
            await c.close()
