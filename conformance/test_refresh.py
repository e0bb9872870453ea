"""PROTOCOL.md sections 2 and 3 (version 2): in-band token refresh moves the connection's expiry."""

import asyncio
import time

import pytest

from odinlib import Client, run


async def answer_to(c, msg):
    await c.send(msg)
    return await c.recv()


def test_valid_refresh_extends_past_the_old_exp(odin):
    async def t():
        old_exp = int(time.time()) + 2
        async with await Client.connect(odin.ws_url(odin.token(exp=old_exp))) as c:
            new_exp = old_exp + 3
            m = await answer_to(c, {"type": "refresh", "token": odin.token(exp=new_exp), "id": "r1"})
            assert m["type"] == "refreshed", m
            assert m["exp"] == new_exp and m["id"] == "r1", m
            assert isinstance(m["timestamp"], (int, float)) and isinstance(m["nonce"], str), m
            # No 4001 at the old expiry: a ping well after it is still answered.
            deadline = old_exp + 1.5
            while time.time() < deadline:
                try:
                    m = await c.recv(timeout=max(0.05, deadline - time.time()))
                    assert m["type"] != "error", m
                except asyncio.TimeoutError:
                    pass
            m = await answer_to(c, {"type": "ping", "id": "p"})
            assert m == {**m, "type": "pong", "id": "p"}, m
            # Without another refresh, the new exp still ends it with 4001.
            code, reason, _ = await c.expect_close(timeout=6)
            assert code == 4001, (code, reason)
            assert time.time() >= new_exp - 0.05

    run(t())


@pytest.mark.parametrize("case", ["bad_signature", "expired", "other_sub", "garbage"])
def test_invalid_refresh_gets_an_error_and_the_connection_stays(odin, case):
    async def t():
        now = int(time.time())
        token = {
            "bad_signature": lambda: odin.token()[:-4] + "AAAA",
            "expired": lambda: odin.token(exp=now - 10),
            "other_sub": lambda: odin.token(sub="someone-else"),
            "garbage": lambda: "not-a-jwt",
        }[case]()
        want = "auth_expired" if case == "expired" else "auth_invalid"
        async with await Client.connect(odin.ws_url(odin.token(sub="conformance"))) as c:
            m = await answer_to(c, {"type": "refresh", "token": token, "id": "x"})
            assert m["type"] == "error" and m["code"] == want and m.get("id") == "x", m
            m = await answer_to(c, {"type": "ping"})
            assert m["type"] == "pong", m

    run(t())


def test_refused_refresh_keeps_the_old_expiry(odin):
    async def t():
        exp = int(time.time()) + 2
        async with await Client.connect(odin.ws_url(odin.token(exp=exp))) as c:
            m = await answer_to(c, {"type": "refresh", "token": odin.token(sub="intruder", exp=exp + 60)})
            assert m["type"] == "error" and m["code"] == "auth_invalid", m
            code, reason, _ = await c.expect_close(timeout=6)
            assert code == 4001, (code, reason)

    run(t())
