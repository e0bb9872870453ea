"""PROTOCOL.md section 2 (connecting, authentication) and the upgrade refusals of sections 5 and 8."""

import hashlib
import time

import pytest

from odinlib import Client, mint, mint_raw, raw_upgrade, run, wait_until


def assert_refusal(resp, status, code):
    assert resp.status == status, f"expected HTTP {status}, got {resp.status} {resp.body!r}"
    body = resp.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, f"expected code {code}: {body}"
    assert isinstance(body.get("error"), str) and body["error"], f"'error' must be human text: {body}"


def upgrade(odin, token=None, headers=None, path="/ws"):
    p = path if token is None else f"{path}?token={token}"
    return raw_upgrade(odin.host, odin.ws_port, p, headers)


# ---- accepted ----------------------------------------------------------------


def test_query_token_accepted(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            assert c.greeting["type"] == "connection_established"

    run(t())


def test_bearer_header_accepted(odin):
    async def t():
        async with await Client.connect(odin.ws_url(), headers={"Authorization": f"Bearer {odin.token()}"}) as c:
            assert c.greeting["type"] == "connection_established"

    run(t())


def test_aud_iss_ignored_when_not_configured(odin):
    tok = odin.token(aud="someone-else", iss="whoever")
    assert upgrade(odin, tok).status == 101


def test_aud_array_ignored_when_not_configured(odin):
    """'aud and iss are ... ignored when not [configured]' - including an (RFC 7519) array aud."""
    tok = odin.token(aud=["app-a", "app-b"])
    r = upgrade(odin, tok)
    assert r.status == 101, f"{r.status} {r.body!r}"


def test_exp_as_non_integer_numericdate(odin):
    """Reading (RFC 7519 NumericDate may be non-integer): exp 1 h ahead with a fraction is valid."""
    tok = mint(odin.secret, sub="x", ttl=None, exp=time.time() + 3600.5)
    r = upgrade(odin, tok)
    assert r.status == 101, f"{r.status} {r.body!r}"


def test_query_wins_over_header_valid_query(odin):
    """Both given: the query parameter wins (a bad header does not matter)."""
    r = upgrade(odin, odin.token(), headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status == 101, r


def test_query_wins_over_header_invalid_query(odin):
    """Both given: the query parameter wins (a good header does not rescue a bad query token)."""
    r = upgrade(odin, "not.a.jwt", headers={"Authorization": f"Bearer {odin.token()}"})
    assert_refusal(r, 401, "auth_invalid")


def test_query_wins_over_header_expired_query(odin):
    expired = odin.token(exp=int(time.time()) - 10)
    r = upgrade(odin, expired, headers={"Authorization": f"Bearer {odin.token()}"})
    assert_refusal(r, 401, "auth_expired")


def test_empty_query_token_with_header_uses_header(odin):
    """An empty ?token= counts as missing, so a header token is the one given (reading of section 2)."""
    r = upgrade(odin, "", headers={"Authorization": f"Bearer {odin.token()}"})
    assert r.status == 101, r


# ---- 401 ----------------------------------------------------------------------


def test_missing_token_401_auth_missing(odin):
    assert_refusal(upgrade(odin), 401, "auth_missing")


def test_empty_query_token_401_auth_missing(odin):
    assert_refusal(upgrade(odin, ""), 401, "auth_missing")


@pytest.mark.parametrize("tok", ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_token_401_auth_invalid(odin, tok):
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_malformed_bearer_header_401_auth_invalid(odin):
    assert_refusal(upgrade(odin, headers={"Authorization": "Bearer garbage"}), 401, "auth_invalid")


def test_bad_signature_401_auth_invalid(odin):
    tok = mint("some-other-secret", sub="x")
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_alg_none_unsigned_401_auth_invalid(odin):
    tok = mint_raw({"alg": "none", "typ": "JWT"}, {"sub": "x", "exp": int(time.time()) + 3600}, None)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_alg_none_with_signature_401_auth_invalid(odin):
    tok = mint_raw({"alg": "none", "typ": "JWT"}, {"sub": "x", "exp": int(time.time()) + 3600}, odin.secret)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithm_same_secret_401_auth_invalid(odin, alg):
    """The algorithm is pinned (HS256 by default): another HMAC with the right secret is refused."""
    tok = mint(odin.secret, sub="x", alg=alg)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_rs256_header_hmac_signed_401_auth_invalid(odin):
    tok = mint_raw({"alg": "RS256", "typ": "JWT"}, {"sub": "x", "exp": int(time.time()) + 3600}, odin.secret)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_missing_sub_401_auth_invalid(odin):
    tok = mint(odin.secret, sub=None)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_missing_exp_401_auth_invalid(odin):
    tok = mint(odin.secret, sub="x", ttl=None)
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_expired_401_auth_expired(odin):
    tok = odin.token(exp=int(time.time()) - 30)
    assert_refusal(upgrade(odin, tok), 401, "auth_expired")


def test_expired_bearer_401_auth_expired(odin):
    tok = odin.token(exp=int(time.time()) - 30)
    assert_refusal(upgrade(odin, headers={"Authorization": f"Bearer {tok}"}), 401, "auth_expired")


def test_no_clock_leeway_exp_this_second_is_expired(odin):
    """'No clock leeway: a token is expired from the second of its exp.'"""
    # Make sure we are not at the very end of a second, then use exp = the current second.
    while time.time() % 1 > 0.7:
        time.sleep(0.05)
    tok = odin.token(exp=int(time.time()))
    assert_refusal(upgrade(odin, tok), 401, "auth_expired")


def test_no_clock_leeway_exp_one_second_ago(odin):
    tok = odin.token(exp=int(time.time()) - 1)
    assert_refusal(upgrade(odin, tok), 401, "auth_expired")


def test_no_fallback_to_builtin_dev_secret(odin):
    """Outside development mode the built-in secret is never used: a token minted with it
    (by the binary's own `token --dev`) is refused."""
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODIN_")}
    p = subprocess.run([odin.command()[0][0], "token", "--dev", "--sub", "dev-user"], env=env,
                       capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    tok = p.stdout.decode().strip().splitlines()[-1]
    assert_refusal(upgrade(odin, tok), 401, "auth_invalid")


def test_auth_failures_counted_in_stats(odin):
    before = odin.stats()["authFailures"]
    upgrade(odin)
    upgrade(odin, "garbage")
    upgrade(odin, odin.token(exp=int(time.time()) - 30))
    wait_until(lambda: odin.stats()["authFailures"] == before + 3, 3, what="authFailures +3")


# ---- configured algorithm / audience / issuer -------------------------------


@pytest.fixture(scope="module")
def odin_hs384_aud(odin_factory):
    return odin_factory(args=["--jwt-algorithm", "HS384", "--jwt-audience", "odin-clients",
                              "--jwt-issuer", "conformance-issuer"], name="hs384")


def test_configured_algorithm_accepted(odin_hs384_aud):
    s = odin_hs384_aud
    tok = mint(s.secret, sub="x", alg="HS384", aud="odin-clients", iss="conformance-issuer")
    assert upgrade(s, tok).status == 101


def test_configured_algorithm_pins_hs256_refused(odin_hs384_aud):
    s = odin_hs384_aud
    tok = mint(s.secret, sub="x", alg="HS256", aud="odin-clients", iss="conformance-issuer")
    assert_refusal(upgrade(s, tok), 401, "auth_invalid")


def test_configured_audience_checked(odin_hs384_aud):
    s = odin_hs384_aud
    wrong = mint(s.secret, sub="x", alg="HS384", aud="someone-else", iss="conformance-issuer")
    missing = mint(s.secret, sub="x", alg="HS384", iss="conformance-issuer")
    assert_refusal(upgrade(s, wrong), 401, "auth_invalid")
    assert_refusal(upgrade(s, missing), 401, "auth_invalid")


def test_configured_audience_in_aud_array(odin_hs384_aud):
    """Reading (RFC 7519 4.1.3): 'aud' may be an array; one matching entry is enough."""
    s = odin_hs384_aud
    tok = mint(s.secret, sub="x", alg="HS384", aud=["other", "odin-clients"], iss="conformance-issuer")
    assert upgrade(s, tok).status == 101


def test_configured_issuer_checked(odin_hs384_aud):
    s = odin_hs384_aud
    wrong = mint(s.secret, sub="x", alg="HS384", aud="odin-clients", iss="mallory")
    missing = mint(s.secret, sub="x", alg="HS384", aud="odin-clients")
    assert_refusal(upgrade(s, wrong), 401, "auth_invalid")
    assert_refusal(upgrade(s, missing), 401, "auth_invalid")


# ---- other refusals of the upgrade (section 8) --------------------------------


def test_other_path_404_not_found(odin):
    r = raw_upgrade(odin.host, odin.ws_port, f"/nope?token={odin.token()}")
    assert_refusal(r, 404, "not_found")


@pytest.fixture(scope="module")
def odin_max2(odin_factory):
    return odin_factory(args=["--max-connections", "2"], name="max2")


def test_max_connections_503_server_full(odin_max2):
    s = odin_max2

    async def t():
        a = await Client.connect(s.ws_url(s.token()))
        b = await Client.connect(s.ws_url(s.token()))
        try:
            r = upgrade(s, s.token())
            assert_refusal(r, 503, "server_full")
        finally:
            await a.close()
            await b.close()
        # a slot frees when a client leaves
        wait_until(lambda: upgrade(s, s.token()).status == 101, 5, what="upgrade accepted again")

    run(t())
