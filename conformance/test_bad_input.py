"""PROTOCOL.md section 5 (bad input) and its readings in section 8."""

import asyncio
import json

import pytest

from odinlib import Client, Closed, Publisher, RawWS, price_event, run, uid, wait_until


async def connect(odin):
    return await Client.connect(odin.ws_url(odin.token()))


async def assert_open(c):
    """The connection is still usable: a ping gets its pong."""
    await c.barrier()


# ---- invalid_message --------------------------------------------------------------------

INVALID_MESSAGES = [
    ("not_json", "this is not json"),
    ("truncated_json", '{"type":"ping"'),
    ("json_array", "[]"),
    ("json_string", '"ping"'),
    ("json_number", "42"),
    ("json_null", "null"),
    ("empty_object", "{}"),
    ("unknown_type", '{"type":"hello"}'),
    ("server_type_from_client", '{"type":"pong"}'),
    ("type_not_string", '{"type":1}'),
    ("subscribe_missing_channels", '{"type":"subscribe"}'),
    ("unsubscribe_missing_channels", '{"type":"unsubscribe"}'),
    ("channels_is_string", '{"type":"subscribe","channels":"batch"}'),
    ("channels_is_null", '{"type":"subscribe","channels":null}'),
    ("channel_not_string_number", '{"type":"subscribe","channels":[1]}'),
    ("channel_not_string_null", '{"type":"subscribe","channels":["batch",null]}'),
    ("channel_not_string_object", '{"type":"unsubscribe","channels":[{"c":"batch"}]}'),
    ("id_not_string", '{"type":"ping","id":5}'),
    ("subscribe_id_not_string", '{"type":"subscribe","channels":["batch"],"id":["x"]}'),
]


@pytest.mark.parametrize("payload", [p for _, p in INVALID_MESSAGES], ids=[i for i, _ in INVALID_MESSAGES])
def test_invalid_message_error_and_stays_open(odin, payload):
    async def t():
        async with await connect(odin) as c:
            await c.send(payload)
            m = await c.expect("error")
            assert m["code"] == "invalid_message", m
            assert isinstance(m["message"], str) and m["message"], m
            await assert_open(c)

    run(t())


def test_invalid_message_does_not_act(odin, nats_server):
    """A subscribe with a non-string channel among valid ones subscribes nothing."""
    async def t():
        tok = uid("M")
        async with await connect(odin) as c, Publisher(nats_server.url) as pub:
            await c.send({"type": "subscribe", "channels": [f"token.{tok}", 7]})
            assert (await c.expect("error"))["code"] == "invalid_message"
            await c.subscribe(["market"])
            await pub.price(tok, 1.0)
            mev, _ = await pub.market()
            before, _ = await c.until_nonce(mev["nonce"])
            assert [m for _, m in before if m["type"] == "price_update"] == []
            assert [m for _, m in await c.drain_quiet() if m["type"] == "price_update"] == []

    run(t())


def test_tenth_invalid_message_closes_1008(odin):
    async def t():
        async with await connect(odin) as c:
            for i in range(9):
                await c.send("nope")
                assert (await c.expect("error"))["code"] == "invalid_message"
            await assert_open(c)
            await c.send("nope")
            code, reason, seen = await c.expect_close()
            assert [m["code"] for m in seen if m["type"] == "error"] == ["invalid_message"], seen
            assert code == 1008, (code, reason)

    run(t())


# ---- invalid_channel / subject injection --------------------------------------------------

INVALID_CHANNELS = [
    "", "foo", "token", "token.", "Token.BTC", "TOKEN.BTC", "token.BTC.price", "token.a.b",
    "token.*", "token.>", "token.BTC*", "token.>.price", "token.BTC >", "token. BTC", "token.BTC ",
    "token.a b", "token.é", "token.%2A", "token.BTC\r\nPUB odin.x 1\r\nx", "token.BTC\x00", "token.BTC\t",
    "token." + "x" * 65, "batch.x", "batch ", " batch", "BATCH", "market.x", "Market", "trades.BTC",
    "odin.token.BTC.price", ">", "*", "token.$SYS",
]


def _rust_escape(ch: str) -> str:
    out = []
    for c in ch:
        esc = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}.get(c)
        out.append(esc if esc else (c if c.isprintable() else "\\u{%x}" % ord(c)))
    return "".join(out)


def _named(message: str, ch: str) -> bool:
    """The channel is named, verbatim or in a usual escaped form (JSON, Python, Rust)."""
    return any(f in message for f in (ch, json.dumps(ch)[1:-1], repr(ch)[1:-1], _rust_escape(ch)))


@pytest.mark.parametrize("ch", INVALID_CHANNELS, ids=[repr(c) for c in INVALID_CHANNELS])
def test_invalid_channel_error_names_channel(odin, ch):
    async def t():
        async with await connect(odin) as c:
            m = await c.subscribe([ch, "batch"], id_="ic")
            assert m["channels"] == ["batch"], f"valid channel in the same request must still subscribe: {m}"
            e = await c.expect("error")
            assert e["code"] == "invalid_channel", e
            assert e.get("id") == "ic", e
            assert _named(e["message"], ch), f"error message does not name the channel {ch!r}: {e}"
            await assert_open(c)

    run(t())


def test_invalid_channel_in_unsubscribe(odin):
    """Reading: the bad-input row applies to unsubscribe too; the valid channels are listed."""
    async def t():
        async with await connect(odin) as c:
            await c.subscribe(["batch"])
            await c.send({"type": "unsubscribe", "channels": ["batch", "token.*"], "id": "uc"})
            m = await c.expect("unsubscribed")
            assert m["channels"] == ["batch"] and m["id"] == "uc", m
            e = await c.expect("error")
            assert e["code"] == "invalid_channel" and "token.*" in e["message"], e

    run(t())


def test_token_id_boundaries(odin):
    async def t():
        async with await connect(odin) as c:
            ok = ["token.a", "token." + "x" * 64, "token.A-b_9", "token._", "token.-"]
            m = await c.subscribe(ok)
            assert sorted(m["channels"]) == sorted(ok)
            assert await c.barrier() == []

    run(t())


def test_subject_injection_subscribes_nothing(odin, nats_server):
    """Injection attempts neither reach NATS as subscriptions nor deliver other tokens' events."""
    async def t():
        victim = uid("V")
        async with await connect(odin) as c, Publisher(nats_server.url) as pub:
            subs_before = nats_server.subscriptions()
            attempts = ["token.*", "token.>", f"token.{victim}.price", "token.>.price", f"token.{victim} ",
                        f"token.{victim}\r\nSUB odin.> 99", "token.*.price", f"token.{victim}.*"]
            await c.send({"type": "subscribe", "channels": attempts, "id": "inj"})
            m = await c.expect("subscribed")
            assert m["channels"] == []
            for _ in attempts:
                assert (await c.expect("error"))["code"] == "invalid_channel"
            assert nats_server.subscriptions() == subs_before, "NATS subscriptions changed"
            await c.subscribe(["market"])
            await pub.price(victim, 1.0)
            await pub.trade(victim)
            mev, _ = await pub.market()
            before, _ = await c.until_nonce(mev["nonce"])
            leaked = [m for _, m in before + await c.drain_quiet() if m.get("tokenId") == victim]
            assert leaked == [], f"injection delivered foreign events: {leaked}"

    run(t())


def test_invalid_channel_does_not_count_toward_close(odin):
    """Section 8: invalid_channel does not count toward the ten-strike close."""
    async def t():
        async with await connect(odin) as c:
            for i in range(12):
                await c.subscribe(["nope"])
                assert (await c.expect("error"))["code"] == "invalid_channel"
            await assert_open(c)

    run(t())


# ---- channel limit ------------------------------------------------------------------------


def test_too_many_channels_in_one_request(odin):
    async def t():
        async with await connect(odin) as c:
            chans = [f"token.L{i:03d}" for i in range(105)]
            await c.send({"type": "subscribe", "channels": chans, "id": "many"})
            m = await c.expect("subscribed")
            assert m["id"] == "many"
            assert len(m["channels"]) == 100 and len(set(m["channels"])) == 100, len(m["channels"])
            assert set(m["channels"]) <= set(chans)
            e = await c.expect("error")
            assert e["code"] == "too_many_channels" and e.get("id") == "many", e
            assert await c.barrier() == [], "more than one too_many_channels error"

    run(t())


def test_too_many_channels_counted_across_requests(odin):
    async def t():
        async with await connect(odin) as c:
            first = [f"token.F{i:03d}" for i in range(60)]
            second = [f"token.G{i:03d}" for i in range(50)]
            assert len((await c.subscribe(first))["channels"]) == 60
            m = await c.subscribe(second, id_="two")
            assert len(m["channels"]) == 40, m
            assert set(m["channels"]) <= set(second)
            e = await c.expect("error")
            assert e["code"] == "too_many_channels" and e.get("id") == "two", e
            # at the limit, a channel already held is not a new one
            m = await c.subscribe([first[0]], id_="held")
            assert m["channels"] == [first[0]]
            assert await c.barrier() == []
            # the limit does not close the connection and does not count as a strike
            for _ in range(10):
                await c.subscribe(["batch"])
                assert (await c.expect("error"))["code"] == "too_many_channels"
            await assert_open(c)

    run(t())


def test_unsubscribing_frees_channel_slots(odin):
    """Reading: the limit counts channels held, so unsubscribing frees room."""
    async def t():
        async with await connect(odin) as c:
            chans = [f"token.H{i:03d}" for i in range(100)]
            assert len((await c.subscribe(chans))["channels"]) == 100
            await c.unsubscribe(chans[:10])
            m = await c.subscribe([f"token.J{i:03d}" for i in range(10)])
            assert len(m["channels"]) == 10
            assert await c.barrier() == []

    run(t())


# ---- rate limit ------------------------------------------------------------------------------


def test_rate_limited_error_after_burst(odin):
    """Default 20/s, burst 40: a burst of 45 pings gets about 40 pongs and rate_limited errors."""
    async def t():
        async with await connect(odin) as c:
            for i in range(45):
                await c.send({"type": "ping", "id": f"r{i}"})
            got = [await c.recv() for _ in range(45)]
            pongs = [m for m in got if m["type"] == "pong"]
            limited = [m for m in got if m["type"] == "error"]
            assert all(m["code"] == "rate_limited" for m in limited), limited
            assert 40 <= len(pongs) <= 42, f"{len(pongs)} pongs for a burst of 45 with burst 40"
            assert len(pongs) + len(limited) == 45
            # the first 40 are all answered
            assert [m["id"] for m in got[:40]] == [f"r{i}" for i in range(40)]

    run(t())


def test_sustained_rate_after_burst(odin):
    """After the burst of 40 is used, about 20 messages a second are served."""
    async def t():
        async with await connect(odin) as c:
            for i in range(40):
                await c.send({"type": "ping"})
            assert all(m["type"] == "pong" for m in [await c.recv() for _ in range(40)])
            await asyncio.sleep(1.0)  # let the bucket refill for one second (not waiting for an event)
            for i in range(26):
                await c.send({"type": "ping"})
            got = [await c.recv() for _ in range(26)]
            pongs = sum(m["type"] == "pong" for m in got)
            assert 18 <= pongs <= 23, f"{pongs} pongs one second after the burst (rate 20/s)"
            assert all(m["code"] == "rate_limited" for m in got if m["type"] == "error")

    run(t())


def test_rate_limited_message_not_acted_on(odin, nats_server):
    async def t():
        tok = uid("RL")
        async with await connect(odin) as c, Publisher(nats_server.url) as pub:
            await c.subscribe(["market"])
            for i in range(45):
                await c.send({"type": "ping"})
            await c.send({"type": "subscribe", "channels": [f"token.{tok}"], "id": "late"})
            got = [await c.recv() for _ in range(46)]
            limited = [m for m in got if m["type"] == "error" and m["code"] == "rate_limited"]
            assert limited, f"no rate_limited in {got[-3:]}"
            assert not [m for m in got if m["type"] == "subscribed"], "a rate-limited subscribe was acted on"
            await pub.price(tok, 1.0)
            mev, _ = await pub.market()
            before, _ = await c.until_nonce(mev["nonce"])
            assert [m for _, m in before + await c.drain_quiet() if m["type"] == "price_update"] == []

    run(t())


def test_tenth_rate_limited_message_closes_1008(odin):
    async def t():
        async with await connect(odin) as c:
            for i in range(60):
                await c.send({"type": "ping"})
            code, reason, seen = await c.expect_close()
            limited = [m for m in seen if m["type"] == "error"]
            assert all(m["code"] == "rate_limited" for m in limited), limited
            assert len(limited) == 10, f"{len(limited)} rate_limited errors before the close"
            assert seen[-1]["type"] == "error", "the 10th strike must get its error before the close"
            assert code == 1008, (code, reason)

    run(t())


def test_invalid_and_rate_limited_strikes_add_up(odin):
    async def t():
        async with await connect(odin) as c:
            for i in range(5):
                await c.send("junk")
            for i in range(40 + 5):
                await c.send({"type": "ping"})
            code, reason, seen = await c.expect_close()
            errs = [m["code"] for m in seen if m["type"] == "error"]
            assert errs.count("invalid_message") == 5 and errs.count("rate_limited") == 5, errs
            assert code == 1008

    run(t())


# ---- size limit ------------------------------------------------------------------------------


def _ping_of_size(n: int) -> str:
    base = '{"type":"ping","id":""}'
    s = '{"type":"ping","id":"' + "x" * (n - len(base)) + '"}'
    assert len(s.encode()) == n
    return s


def test_message_of_exactly_4096_bytes_accepted(odin):
    async def t():
        async with await connect(odin) as c:
            await c.send(_ping_of_size(4096))
            m = await c.expect("pong")
            assert m["id"] == "x" * (4096 - len('{"type":"ping","id":""}'))

    run(t())


def test_message_of_4097_bytes_closes_1009(odin):
    async def t():
        async with await connect(odin) as c:
            await c.send(_ping_of_size(4097))
            code, reason, seen = await c.expect_close()
            assert code == 1009, (code, reason, seen)

    run(t())


def test_fragmented_message_of_4096_bytes_accepted(odin):
    async def t():
        async with await connect(odin) as c:
            s = _ping_of_size(4096)
            await c.ws.send([s[i:i + 1000] for i in range(0, len(s), 1000)])
            assert (await c.expect("pong"))["id"].startswith("xxx")

    run(t())


def test_fragmented_message_over_limit_closes_1009(odin):
    async def t():
        async with await connect(odin) as c:
            s = _ping_of_size(4097)
            await c.ws.send([s[i:i + 1000] for i in range(0, len(s), 1000)])
            code, reason, seen = await c.expect_close()
            assert code == 1009, (code, reason, seen)

    run(t())


def test_frame_announcing_huge_length_refused_from_header(odin):
    """Section 8: refused from its header (close 1009), never buffered; dropped within 1 s."""
    async def t():
        r = await RawWS.connect(odin.host, odin.ws_port, f"/ws?token={odin.token()}")
        try:
            assert (await r.read_json())["type"] == "connection_established"
            await r.send_frame(0x1, b'{"type":', declared_len=100_000_000)  # only 8 bytes of 100 MB follow
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            close_code = None
            while True:
                try:
                    fin, op, p = await r.read_frame(3.0)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                if op == 0x8:
                    close_code = int.from_bytes(p[:2], "big") if len(p) >= 2 else None
                    # after the close frame the server drops the TCP connection within the grace
                    try:
                        rest = await asyncio.wait_for(r.reader.read(), 3.0)
                    except ConnectionError:
                        rest = b""
                    assert rest == b""
                    break
            assert close_code == 1009, f"close code {close_code}"
            assert loop.time() - t0 < 2.5
        finally:
            r.close()

    run(t())


def test_text_frame_with_invalid_utf8(odin):
    """Not covered explicitly. Readings: either the 'not JSON' row (invalid_message, stays open)
    or RFC 6455 (fail the connection, close 1007). A drop without any close frame is neither."""
    async def t():
        r = await RawWS.connect(odin.host, odin.ws_port, f"/ws?token={odin.token()}")
        try:
            assert (await r.read_json())["type"] == "connection_established"
            await r.send_frame(0x1, b'{"type":"ping","id":"\xff\xfe"}')
            try:
                fin, op, p = await r.read_frame(3)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise AssertionError("connection dropped without a close frame or an error message") from None
            if op == 0x8:
                assert int.from_bytes(p[:2], "big") == 1007, p
            else:
                m = json.loads(p)
                assert m["type"] == "error" and m["code"] == "invalid_message", m
        finally:
            r.close()

    run(t())


def test_binary_frame_closes_1003(odin):
    async def t():
        async with await connect(odin) as c:
            await c.ws.send(b'{"type":"ping"}')
            code, reason, seen = await c.expect_close()
            assert code == 1003, (code, reason)

    run(t())


# ---- isolation ---------------------------------------------------------------------------------


def test_bad_input_does_not_affect_other_clients(odin, nats_server):
    async def t():
        tok = uid("ISO")
        async with await connect(odin) as good, Publisher(nats_server.url) as pub:
            await good.subscribe([f"token.{tok}"])
            bads = [await connect(odin) for _ in range(3)]
            await bads[0].ws.send(b"\x00\x01")
            await bads[1].send(_ping_of_size(5000))
            for _ in range(60):
                await bads[2].send("junk")
            for b in bads:
                await b.expect_close(5)
            ev, data = await pub.price(tok, 1.0)
            await good.until_nonce(ev["nonce"])
            await assert_open(good)
        assert odin.health().status == 200

    run(t())


# ---- the limits are settings (section 8: --max-channels, --rate-limit/--rate-burst, --max-message-bytes) ----


@pytest.fixture(scope="module")
def odin_limits(odin_factory):
    return odin_factory(args=["--max-channels", "3", "--rate-limit", "5", "--rate-burst", "5",
                              "--max-message-bytes", "256"], name="limits")


def test_max_channels_setting(odin_limits):
    async def t():
        async with await connect(odin_limits) as c:
            m = await c.subscribe(["batch", "market", "token.A", "token.B"], id_="l")
            assert len(m["channels"]) == 3
            assert (await c.expect("error"))["code"] == "too_many_channels"

    run(t())


def test_rate_burst_setting(odin_limits):
    async def t():
        async with await connect(odin_limits) as c:
            for i in range(7):
                await c.send({"type": "ping"})
            got = [await c.recv() for _ in range(7)]
            assert [m["type"] for m in got[:5]] == ["pong"] * 5
            assert sum(m["type"] == "error" and m["code"] == "rate_limited" for m in got) >= 1

    run(t())


def test_max_message_bytes_setting(odin_limits):
    async def t():
        async with await connect(odin_limits) as c:
            await c.send(_ping_of_size(256))
            await c.expect("pong")
            await c.send(_ping_of_size(257))
            code, reason, _ = await c.expect_close()
            assert code == 1009, (code, reason)

    run(t())
