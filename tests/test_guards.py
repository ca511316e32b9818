"""The guard chain's shape and its guards, tried as an attacker would: no token, a wrong one,
an expired one, forged and `alg: none` JWTs, a flood from one address."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest

from gateway.common.networks import parse_networks
from gateway.core.store import Store
from gateway.guards.authenticate import Authenticate, Authenticator
from gateway.guards.chain import Allow, Caller, Challenge, GuardChain, Refuse, Verdict
from gateway.guards.jwt_tokens import JwtTokens
from gateway.guards.lockout import LockoutBook, LockoutPolicy
from gateway.guards.rate_limit import RateLimit, SharedLimits, new_limiter, parse_rate
from gateway.guards.tokens import IssuedTokens, StaticTokens, credential_id, issue_token

SECRET = "a-strong-random-secret-of-32-chars!!"


class Named:
    """A guard with a fixed verdict, to check the chain's own rules."""

    def __init__(self, name: str, verdict: Verdict) -> None:
        self.name = name
        self.verdict = verdict
        self.seen = 0

    def check(self, caller: Caller, principal: str) -> Verdict:
        self.seen += 1
        return self.verdict


def test_the_chain_refuses_guards_out_of_the_documented_order() -> None:
    with pytest.raises(ValueError, match="address -> rate_limit -> authentication -> "
                                         "shared_limit -> stranger"):
        GuardChain([Named("authentication", Allow("x")), Named("rate_limit", Allow())])


def test_closed_by_default_a_caller_no_guard_identified_is_refused() -> None:
    verdict = GuardChain([Named("rate_limit", Allow())]).admit(Caller("http"))
    assert isinstance(verdict, Refuse) and verdict.code == "unauthorized"


def test_the_first_refusal_ends_the_way_and_names_its_guard() -> None:
    later = Named("authentication", Allow("x"))
    chain = GuardChain([Named("rate_limit", Refuse("rate_limited", "slow down", 3)), later])
    verdict = chain.admit(Caller("http"))
    assert verdict == Refuse("rate_limited", "slow down", 3, "rate_limit")
    assert later.seen == 0


def test_a_challenge_is_the_reply_instead_of_an_answer() -> None:
    chain = GuardChain([Named("authentication", Allow("im:bob")),
                        Named("stranger", Challenge("Your code is 1234"))])
    assert chain.admit(Caller("im")) == Challenge("Your code is 1234", "stranger")


def test_an_allow_carries_the_principal_and_the_guards_passed() -> None:
    chain = GuardChain([Named("rate_limit", Allow()), Named("authentication", Allow("jwt:ada"))])
    assert chain.admit(Caller("http")) == Allow("jwt:ada", ("rate_limit", "authentication"))


def test_the_credential_never_shows_in_a_repr() -> None:
    assert "s3cret" not in repr(Caller("http", "1.2.3.4", "s3cret"))


def auth_chain(store: Store, *extra: object) -> GuardChain:
    sources = [StaticTokens(["static-token-of-some-length"]), IssuedTokens(store), *extra]
    return GuardChain([Authenticate(Authenticator(sources),  # type: ignore[arg-type]
                                    LockoutBook(), LockoutPolicy())])


def test_tokens_static_issued_unknown_and_expired(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    chain = auth_chain(store)
    issued, _ = issue_token(store, 3600, label="tray")
    short, _ = issue_token(store, 0.05, label="short")
    assert chain.admit(Caller("http", credential="static-token-of-some-length")) == Allow(
        "token:config", ("authentication",), credential_id("static-token-of-some-length"))
    tray = chain.admit(Caller("http", credential=issued))
    assert isinstance(tray, Allow) and tray.principal == "token:tray"
    assert tray.credential == store.tokens(time.time())[0].id  # as `moltbot token list` shows
    time.sleep(0.1)  # let the short one expire (expiry is exact, never cached past it)
    for bad in (short, "mb_guess", "", "x" * 5000, None):
        verdict = chain.admit(Caller("http", credential=bad))
        assert isinstance(verdict, Refuse) and verdict.code == "unauthorized", bad
    store.close()


def test_a_valid_jwt_names_its_subject(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    chain = auth_chain(store, JwtTokens(SECRET))
    token = jwt.encode({"sub": "ada", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert chain.admit(Caller("http", credential=token)).principal == "jwt:ada"
    store.close()


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize("token", [
    pytest.param(jwt.encode({"sub": "ada", "exp": time.time() - 60}, SECRET,
                            algorithm="HS256"), id="expired"),
    pytest.param(jwt.encode({"sub": "ada", "exp": time.time() + 60}, "another-secret-of-32-"
                            "characters-or-more", algorithm="HS256"), id="forged"),
    pytest.param(jwt.encode({"sub": "ada"}, SECRET, algorithm="HS256"), id="no-exp"),
    pytest.param(jwt.encode({"sub": "ada", "exp": time.time() + 60}, SECRET + SECRET,
                            algorithm="HS512"), id="other-algorithm"),
    pytest.param(_unsigned({"sub": "ada", "exp": time.time() + 60}), id="alg-none"),
])
def test_bad_jwts_are_refused(tmp_path: Path, token: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    verdict = auth_chain(store, JwtTokens(SECRET)).admit(Caller("http", credential=token))
    assert isinstance(verdict, Refuse) and verdict.code == "unauthorized"
    store.close()


def test_rates_in_the_guides_spelling() -> None:
    assert str(parse_rate("1000/min")) == str(parse_rate("1000/minute"))
    with pytest.raises(ValueError, match="expected a rate such as"):
        parse_rate("fast")


def test_rate_limit_per_address_then_global_with_retry_after() -> None:
    limiter, exempt = new_limiter(), parse_networks(["127.0.0.0/8"])
    per_address = RateLimit(limiter, per_ip="2/min", exempt=exempt)
    shared = SharedLimits(limiter, global_limit="3/min", exempt=exempt)
    one, two = Caller("http", "203.0.113.1"), Caller("http", "203.0.113.2")
    assert [type(per_address.check(one, "")) for _ in range(3)] == [Allow, Allow, Refuse]
    refused = per_address.check(one, "")
    assert isinstance(refused, Refuse) and refused.code == "rate_limited"
    assert refused.retry_after is not None and refused.retry_after >= 1
    assert "limit for your address" in refused.message
    assert isinstance(per_address.check(two, ""), Allow)  # another address: its own budget
    assert [type(shared.check(two, "token:x")) for _ in range(4)] == [Allow] * 3 + [Refuse]
    global_refusal = shared.check(Caller("http", "203.0.113.4"), "token:x")
    assert isinstance(global_refusal, Refuse) and "global limit" in global_refusal.message
    loopback = Caller("http", "127.0.0.1")
    assert all(isinstance(g.check(loopback, ""), Allow) for g in (per_address, shared)
               for _ in range(50))  # loopback is exempt


def test_each_sender_of_a_chat_platform_has_its_own_budget() -> None:
    guard = SharedLimits(new_limiter("memory://"), global_limit="100/min", exempt=(),
                         per_sender="2/min", chat_channels=frozenset({"enterprise_im"}))
    def ask(sender: str) -> Verdict:
        return guard.check(Caller("enterprise_im", "203.0.113.1", sender=sender, text="hi"), "")
    assert [type(ask("alice")) for _ in range(3)] == [Allow, Allow, Refuse]
    refused = ask("alice")
    assert isinstance(refused, Refuse) and "your limit as a sender" in refused.message
    assert isinstance(ask("bob"), Allow)  # same platform address, another person


def test_an_unknown_limits_storage_is_refused_with_its_key() -> None:
    from gateway.common.options import ConfigError
    from gateway.config import parse_config

    with pytest.raises(ConfigError, match=r"auth\.rate_limit\.storage: cannot use 'nosuch://x'"):
        parse_config({"auth": {"rate_limit": {"storage": "nosuch://x"}}})
