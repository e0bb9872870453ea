"""PROTOCOL.md "Versions" (?protocol=2 negotiation), the `reconnect` advisory of version 2 on
shutdown (guarantee 6) and at a connection's lifetime (guarantee 7), and the `channel` field of
channel errors (section 5), which every version gets."""

import signal
import time

import pytest

from odinlib import Client, raw_upgrade, run


def _v2(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "protocol=2"


def _is_whole_ms(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# ---- negotiation ---------------------------------------------------------------------------


def test_version_is_1_unless_2_is_asked_for(odin):
    async def t():
        for url, version in ((odin.ws_url(odin.token()), 1),
                             (odin.ws_url(odin.token()) + "&protocol=1", 1),
                             (_v2(odin.ws_url(odin.token())), 2)):
            async with await Client.connect(url) as c:
                assert c.greeting["protocolVersion"] == version, (url, c.greeting)

    run(t())


@pytest.mark.parametrize("asked", ["7", "0", "two", "02"])
def test_unknown_version_is_refused_with_400(odin, asked):
    r = raw_upgrade(odin.host, odin.ws_port, f"/ws?protocol={asked}&token={odin.token()}")
    assert r.status == 400, (r.status, r.body)
    assert r.json()["code"] == "protocol_unsupported", r.body
    assert isinstance(r.json()["error"], str)


# ---- structured channel errors (section 5) -------------------------------------------------


def test_channel_errors_carry_the_channel_verbatim_in_both_versions(odin_factory):
    s = odin_factory(args=["--max-channels", "1"], name="chanfield")
    odd = 'token."q"\\b\u0001é'

    async def t():
        for url in (s.ws_url(s.token()), _v2(s.ws_url(s.token()))):
            async with await Client.connect(url) as c:
                await c.send({"type": "subscribe", "id": "x", "channels": [odd, "token.A", "token.B", "batch"]})
                assert (await c.expect("subscribed"))["channels"] == ["token.A"]
                e = await c.expect("error")
                assert (e["code"], e["channel"], e["id"]) == ("invalid_channel", odd, "x"), e
                e = await c.expect("error")
                assert (e["code"], e["channel"]) == ("too_many_channels", "token.B"), e
                await c.send("not json")
                e = await c.expect("error")
                assert e["code"] == "invalid_message" and "channel" not in e, e

    run(t())


# ---- the reconnect advisory (guarantees 6 and 7) -------------------------------------------


def test_sigterm_advises_v2_clients_then_1001_and_v1_clients_get_only_1001(odin_factory):
    s = odin_factory(args=["--drain-timeout", "3s", "--reconnect-spread", "2s"], name="advise")

    async def t():
        v2 = [await Client.connect(_v2(s.ws_url(s.token()))) for _ in range(5)]
        v1 = await Client.connect(s.ws_url(s.token()))
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        for c in v2:
            code, _, seen = await c.expect_close(timeout=4)
            assert code == 1001
            assert seen and seen[-1]["type"] == "reconnect", seen
            adv = seen[-1]
            assert adv["reason"] == "shutdown", adv
            assert _is_whole_ms(adv["delayMs"]) and adv["delayMs"] <= 2000, adv
        code, _, seen = await v1.expect_close(timeout=4)
        assert code == 1001 and seen == [], seen
        assert time.monotonic() - t0 <= 3.5

    run(t())


def test_lifetime_closes_4003_with_the_advisory_first_for_v2(odin_factory):
    s = odin_factory(args=["--max-connection-lifetime", "1s", "--connection-lifetime-jitter", "0.5",
                           "--reconnect-spread", "1s"], name="lifetime")

    async def t():
        t0 = time.monotonic()
        v2 = await Client.connect(_v2(s.ws_url(s.token())))
        v1 = await Client.connect(s.ws_url(s.token()))
        code, _, seen = await v2.expect_close(timeout=3)
        assert code == 4003, code
        assert seen and seen[-1]["type"] == "reconnect" and seen[-1]["reason"] == "lifetime", seen
        assert _is_whole_ms(seen[-1]["delayMs"]) and seen[-1]["delayMs"] <= 1000
        code, _, seen = await v1.expect_close(timeout=3)
        assert code == 4003 and seen == [], seen
        # drawn within [0.5 s, 1 s]
        assert 0.45 <= time.monotonic() - t0 <= 2.5

    run(t())
