"""PROTOCOL.md section 1 (events on NATS), the channels of section 3, guarantees 1-3 of
section 4 and the event readings of section 8.

"Not delivered" is shown with a marker: a valid event published after the one under
test on the *same subject* (guarantee 2 orders them), then a short bounded grace.
"""

import json

import pytest

from odinlib import (Client, Publisher, batch_event, dumps, market_event, now_ms, price_event, run,
                     trade_event, uid, volume_event, wait_until)


async def subscribed_client(odin, channels):
    c = await Client.connect(odin.ws_url(odin.token()))
    await c.subscribe(channels)
    return c


async def expect_raw(c, data: bytes, nonce: str):
    before, (raw, m) = await c.until_nonce(nonce)
    assert raw == data.decode("utf-8"), f"not byte-for-byte:\n published {data!r}\n received  {raw!r}"
    return before


def non_heartbeat(msgs):
    return [m for _, m in msgs if m["type"] != "heartbeat"]


# ---- channels and forwarding ---------------------------------------------------------


def test_price_update_forwarded_byte_for_byte(odin, nats_server):
    async def t():
        tok = uid("P")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.price(tok, 123.45, source="scheduler", previousPrice=120.0, change24h=-2.5)
            assert await expect_raw(c, data, ev["nonce"]) == []

    run(t())


def test_volume_update_forwarded_on_token_channel(odin, nats_server):
    async def t():
        tok = uid("V")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.volume(tok, 98765.4321)
            assert await expect_raw(c, data, ev["nonce"]) == []

    run(t())


def test_trade_executed_forwarded_on_token_channel(odin, nats_server):
    async def t():
        tok = uid("T")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.trade(tok, price=10.5, amount=0.25, side="sell")
            assert await expect_raw(c, data, ev["nonce"]) == []

    run(t())


def test_batch_update_forwarded_on_batch_channel(odin, nats_server):
    async def t():
        async with await subscribed_client(odin, ["batch"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.batch([{"tokenId": "AAA", "price": 1.5, "volume24h": 10},
                                        {"tokenId": "BBB", "price": 2.5}])
            await expect_raw(c, data, ev["nonce"])

    run(t())


def test_market_stats_forwarded_on_market_channel(odin, nats_server):
    async def t():
        async with await subscribed_client(odin, ["market"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.market(total_volume=12345.6, total_trades=42, active=5)
            await expect_raw(c, data, ev["nonce"])

    run(t())


def test_market_stats_whole_number_as_float_accepted(odin, nats_server):
    """Section 8: totalTrades24h and activeTokens may be written 42.0 - accepted, bytes kept."""
    async def t():
        async with await subscribed_client(odin, ["market"]) as c, Publisher(nats_server.url) as pub:
            nonce = uid("n-")
            data = (b'{"type":"market_stats","timestamp":%f,"nonce":"%s","totalVolume24h":1.0,'
                    b'"totalTrades24h":42.0,"activeTokens":3.0}' % (now_ms(), nonce.encode()))
            await pub.raw(pub.subj_market(), data, header_nonce=nonce)
            await expect_raw(c, data, nonce)

    run(t())


def test_events_reach_only_their_channel(odin, nats_server):
    """token.A gets only A's price/volume/trade; batch/market events go to batch/market only."""
    async def t():
        a, b = uid("A"), uid("B")
        async with await subscribed_client(odin, [f"token.{a}"]) as ca, \
                await subscribed_client(odin, ["batch"]) as cb, \
                await subscribed_client(odin, ["market"]) as cm, \
                Publisher(nats_server.url) as pub:
            await pub.price(b, 1.0)
            await pub.volume(b)
            await pub.trade(b)
            bev, bdata = await pub.batch([{"tokenId": a, "price": 1.0}])
            mev, mdata = await pub.market()
            pa, pdata = await pub.price(a, 2.0)
            before = await expect_raw(ca, pdata, pa["nonce"])
            assert non_heartbeat(before) == [], f"token.{a} got foreign events: {before}"
            assert non_heartbeat(await ca.drain_quiet()) == []
            before = await expect_raw(cb, bdata, bev["nonce"])
            assert non_heartbeat(before) == [] and non_heartbeat(await cb.drain_quiet()) == []
            before = await expect_raw(cm, mdata, mev["nonce"])
            assert non_heartbeat(before) == [] and non_heartbeat(await cm.drain_quiet()) == []

    run(t())


def test_payload_bytes_unchanged_unusual_encoding(odin, nats_server):
    """'The server forwards these bytes unchanged; it never re-encodes an event.'
    Whitespace, key order, escapes, non-ASCII, number spellings and unknown extra fields."""
    async def t():
        tok = uid("E")
        nonce = uid("n-")
        text = ('{ "nonce" : "%s", "extra": {"nested": [1, 2.50, 1e3, null, true]},\n'
                '  "price": 1.50, "tokenId": "%s", "type": "price_update", "source": "trade",\n'
                '  "timestamp": %s, "note": "caf\\u00e9 \u65e5\u672c \\"q\\"" }') % (nonce, tok, "%.3f" % now_ms())
        data = text.encode("utf-8")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            await pub.raw(pub.subj_price(tok), data, header_nonce=nonce)
            await expect_raw(c, data, nonce)

    run(t())


def test_timestamp_with_microsecond_fraction_forwarded(odin, nats_server):
    async def t():
        tok = uid("F")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            nonce = uid("n-")
            data = ('{"type":"price_update","timestamp":%s,"nonce":"%s","tokenId":"%s","price":3,"source":"trade"}'
                    % ("%.3f" % now_ms(), nonce, tok)).encode()
            await pub.raw(pub.subj_price(tok), data, header_nonce=nonce)
            await expect_raw(c, data, nonce)

    run(t())


def test_max_length_token_id_and_nonce(odin, nats_server):
    """tokenId of 64 characters of the full alphabet, nonce of 128 characters: both valid."""
    async def t():
        tok = ("aZ09_-" * 11)[:64]
        nonce = ("N" + uid() * 11)[:128]
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            ev, data = await pub.price(tok, 5.0, nonce=nonce)
            await expect_raw(c, data, nonce)

    run(t())


# ---- de-duplication (section 1, guarantee 1, section 8) ---------------------------------


def test_duplicate_nonce_with_header_delivered_once_and_counted(odin, nats_server):
    async def t():
        tok = uid("D")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c1, \
                await subscribed_client(odin, [f"token.{tok}"]) as c2, Publisher(nats_server.url) as pub:
            before = odin.stats()["duplicatesDropped"]
            ev = price_event(tok, 1.0)
            data = await pub.event(pub.subj_price(tok), ev)
            await pub.event(pub.subj_price(tok), ev)  # retry: same bytes, same header
            await pub.event(pub.subj_price(tok), dict(ev, price=9.0))  # doubled publisher, same nonce
            marker, mdata = await pub.price(tok, 2.0)
            for c in (c1, c2):
                seen = await expect_raw(c, mdata, marker["nonce"])
                assert [m["nonce"] for _, m in seen if m["type"] != "heartbeat"] == [ev["nonce"]], seen
                assert seen[0][0] == data.decode()
            wait_until(lambda: odin.stats()["duplicatesDropped"] == before + 2, 3, what="duplicatesDropped +2")

    run(t())


def test_without_header_body_nonce_is_the_key(odin, nats_server):
    """No Nats-Msg-Id header: the server falls back to the body's nonce (delivered once)."""
    async def t():
        tok = uid("H")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            before = odin.stats()["duplicatesDropped"]
            ev = price_event(tok, 1.0)
            data = await pub.event(pub.subj_price(tok), ev, header=False)
            await pub.event(pub.subj_price(tok), ev, header=False)
            await pub.event(pub.subj_price(tok), ev, header=True)  # same key, now via the header
            marker, mdata = await pub.price(tok, 2.0, )
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert [raw for raw, m in seen if m["type"] != "heartbeat"] == [data.decode()]
            wait_until(lambda: odin.stats()["duplicatesDropped"] == before + 2, 3, what="duplicatesDropped +2")

    run(t())


def test_header_wins_over_body_nonce(odin, nats_server):
    """Header and body differ: the header is the de-duplication key."""
    async def t():
        tok = uid("W")
        hdr = uid("hdr-")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            e1 = price_event(tok, 1.0)
            d1 = dumps(e1)
            await pub.raw(pub.subj_price(tok), d1, header_nonce=hdr)
            e2 = price_event(tok, 2.0)  # different body nonce, same header -> duplicate
            await pub.raw(pub.subj_price(tok), dumps(e2), header_nonce=hdr)
            marker, mdata = await pub.price(tok, 3.0)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert [raw for raw, m in seen if m["type"] != "heartbeat"] == [d1.decode()]

    run(t())


def test_same_body_nonce_different_headers_both_delivered(odin, nats_server):
    """Section 8: the key is the header when present, so these are two events."""
    async def t():
        tok = uid("X")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            body_nonce = uid("n-")
            d1 = dumps(price_event(tok, 1.0, nonce=body_nonce))
            d2 = dumps(price_event(tok, 2.0, nonce=body_nonce))
            await pub.raw(pub.subj_price(tok), d1, header_nonce=uid("h1-"))
            await pub.raw(pub.subj_price(tok), d2, header_nonce=uid("h2-"))
            marker, mdata = await pub.price(tok, 3.0)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert [raw for raw, m in seen if m["type"] != "heartbeat"] == [d1.decode(), d2.decode()]

    run(t())


def test_duplicate_nonce_across_subjects_dropped(odin, nats_server):
    """At most once per nonce: the same nonce on another token's subject is dropped at ingest."""
    async def t():
        a, b = uid("A"), uid("B")
        async with await subscribed_client(odin, [f"token.{a}", f"token.{b}"]) as c, Publisher(nats_server.url) as pub:
            n = uid("n-")
            ea, da = await pub.price(a, 1.0, nonce=n)
            await expect_raw(c, da, n)
            await pub.price(b, 1.0, nonce=n)
            marker, mdata = await pub.price(b, 2.0)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert non_heartbeat(seen) == [], f"second event with nonce {n} delivered: {seen}"

    run(t())


def test_overlong_header_falls_back_to_body_nonce(odin, nats_server):
    """Section 8: 'the key is the header when it is present (1-128 characters), else the body's
    nonce' - read as: a header outside 1-128 characters is not used, the body nonce is the key."""
    async def t():
        tok = uid("HL")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            ev = price_event(tok, 1.0)
            d1 = dumps(ev)
            await pub.raw(pub.subj_price(tok), d1, header_nonce="h" * 129)
            await pub.raw(pub.subj_price(tok), d1, header_nonce=None)  # same body nonce: duplicate
            marker, mdata = await pub.price(tok, 2.0)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert [raw for raw, m in seen if m["type"] != "heartbeat"] == [d1.decode()]

    run(t())


# ---- invalid events (section 1, section 8) ------------------------------------------------


def _ev_bytes(tok, **over):
    ev = price_event(tok, 1.0)
    ev.update(over)
    return ev


def _invalid_cases():
    """(id, builder(tok) -> (subject_kind, payload_bytes, header_nonce_or_None))."""
    def price_subj(payload, header=True):
        return lambda tok: ("price", payload(tok), (uid("h-") if header else None))

    def dropkey(ev, k):
        ev = dict(ev)
        ev.pop(k)
        return ev

    return [
        # section 1: neither header nor body nonce
        ("no_header_no_nonce", lambda tok: ("price", dumps(dropkey(price_event(tok), "nonce")), None)),
        # section 8: header but no body nonce
        ("header_only_no_body_nonce", lambda tok: ("price", dumps(dropkey(price_event(tok), "nonce")), uid("h-"))),
        # section 1: not a JSON object with a known type
        ("not_json", lambda tok: ("price", b"this is not json", uid("h-"))),
        ("truncated_json", lambda tok: ("price", dumps(price_event(tok))[:-5], uid("h-"))),
        ("json_array", lambda tok: ("price", b"[1,2,3]", uid("h-"))),
        ("json_string", lambda tok: ("price", b'"price_update"', uid("h-"))),
        ("json_null", lambda tok: ("price", b"null", uid("h-"))),
        ("unknown_type", lambda tok: ("price", dumps(dict(price_event(tok), type="price_changed")), None)),
        ("missing_type", lambda tok: ("price", dumps(dropkey(price_event(tok), "type")), None)),
        ("client_type_as_event", lambda tok: ("price", dumps(dict(price_event(tok), type="subscribe")), None)),
        ("not_utf8", lambda tok: ("price", dumps(price_event(tok)).replace(b'"trade"', b'"tr\xff\xfede"'), None)),
        # section 8: subject and body must agree
        ("trade_on_price_subject", lambda tok: ("price", dumps(trade_event(tok)), None)),
        ("volume_on_price_subject", lambda tok: ("price", dumps(volume_event(tok)), None)),
        ("price_on_trade_subject", lambda tok: ("trade", dumps(price_event(tok)), None)),
        ("token_mismatch", lambda tok: ("price", dumps(price_event(tok + "x")), None)),
        # section 3: nonce is 1-128 characters (section 8: header too)
        ("body_nonce_129", lambda tok: ("price", dumps(price_event(tok, nonce="n" * 129)), None)),
        ("body_nonce_empty", lambda tok: ("price", dumps(price_event(tok, nonce="")), None)),
        # section 8: counts are whole, non-negative numbers
        ("market_trades_fraction", lambda tok: ("market", dumps(market_event(total_trades=42.5)), None)),
        ("market_trades_negative", lambda tok: ("market", dumps(market_event(total_trades=-1)), None)),
        ("market_active_fraction", lambda tok: ("market", dumps(market_event(active=3.5)), None)),
    ]


@pytest.mark.parametrize("case", _invalid_cases(), ids=[c[0] for c in _invalid_cases()])
def test_invalid_event_dropped_and_counted(odin, nats_server, case):
    _, build = case

    async def t():
        tok = uid("I")
        kind, payload, header = build(tok)
        chans = {"price": [f"token.{tok}"], "trade": [f"token.{tok}"], "market": ["market"]}[kind]
        async with await subscribed_client(odin, chans) as c, Publisher(nats_server.url) as pub:
            subject = {"price": pub.subj_price(tok), "trade": pub.subj_trade(tok), "market": pub.subj_market()}[kind]
            before = odin.stats()["invalidEvents"]
            await pub.raw(subject, payload, header_nonce=header)
            if kind == "market":
                marker = market_event()
            elif kind == "trade":
                marker = trade_event(tok)
            else:
                marker = price_event(tok, 2.0)
            mdata = await pub.event(subject, marker)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert non_heartbeat(seen) == [], f"invalid event was forwarded: {seen}"
            wait_until(lambda: odin.stats()["invalidEvents"] == before + 1, 3, what="invalidEvents +1")

    run(t())


def test_invalid_token_id_in_subject_counted(odin, nats_server):
    """tokenId must match ^[A-Za-z0-9_-]{1,64}$ - an event for 'bad!id' is not valid."""
    async def t():
        async with Publisher(nats_server.url) as pub:
            before = odin.stats()["invalidEvents"]
            for tok in ["bad!id", "x" * 65]:
                await pub.event(pub.subj_price(tok), price_event(tok))
            wait_until(lambda: odin.stats()["invalidEvents"] == before + 2, 3, what="invalidEvents +2")

    run(t())


@pytest.mark.parametrize("case", [
    ("price_as_string", lambda tok: price_event(tok, "1.0")),
    ("bad_source", lambda tok: price_event(tok, source="manual")),
    ("missing_timestamp", lambda tok: {k: v for k, v in price_event(tok).items() if k != "timestamp"}),
    ("timestamp_as_string", lambda tok: price_event(tok, ts="1764288000123")),
    ("missing_price", lambda tok: {k: v for k, v in price_event(tok).items() if k != "price"}),
], ids=lambda c: c[0])
def test_schema_violating_price_update_not_forwarded(odin, nats_server, case):
    """Reading: section 1 says the payload *is* the section 3 object; one that is not
    (wrong field types, missing required fields, values outside the enumerations) is invalid."""
    _, build = case

    async def t():
        tok = uid("Z")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            before = odin.stats()["invalidEvents"]
            ev = build(tok)
            await pub.event(pub.subj_price(tok), ev)
            marker, mdata = await pub.price(tok, 2.0)
            seen = await expect_raw(c, mdata, marker["nonce"])
            assert non_heartbeat(seen) == [], f"schema-violating event was forwarded: {seen}"
            wait_until(lambda: odin.stats()["invalidEvents"] == before + 1, 3, what="invalidEvents +1")

    run(t())


# ---- per-token order (guarantee 2) ---------------------------------------------------------


def test_per_token_order_and_no_loss_in_burst(odin, nats_server):
    """300 price updates of one token published back to back arrive all, in order
    (a client that keeps up gets every update, even in a burst)."""
    async def t():
        tok = uid("O")
        n = 300
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            nonces = []
            for i in range(n):
                ev, _ = await pub.price(tok, 100.0 + i, nonce=f"ord-{tok}-{i:04d}", flush=False, seq=i)
                nonces.append(ev["nonce"])
            await pub.nc.flush()
            got = []
            while len(got) < n:
                m = await c.recv(5)
                got.append(m["nonce"])
                if m["nonce"] == nonces[-1]:
                    break
            assert got == nonces

    run(t())


def test_per_token_order_trades(odin, nats_server):
    async def t():
        tok = uid("Q")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            nonces = []
            for i in range(100):
                ev, _ = await pub.trade(tok, flush=False, nonce=f"tr-{tok}-{i:03d}")
                nonces.append(ev["nonce"])
            await pub.nc.flush()
            got = [(await c.recv(5))["nonce"] for _ in range(100)]
            assert got == nonces

    run(t())


# ---- snapshot on subscribe (guarantee 3, section 8) ------------------------------------------


async def ingest(pub, observer, subject, ev):
    """Publish and wait until the server has routed it (seen by an observer)."""
    data = await pub.event(subject, ev)
    await observer.until_nonce(ev["nonce"])
    return data


def test_snapshot_is_latest_price_update_same_bytes(odin, nats_server):
    async def t():
        tok = uid("S")
        async with await subscribed_client(odin, [f"token.{tok}"]) as obs, Publisher(nats_server.url) as pub:
            await ingest(pub, obs, pub.subj_price(tok), price_event(tok, 1.0))
            p2 = price_event(tok, 2.0, source="scheduler", change24h=1.5)
            d2 = await ingest(pub, obs, pub.subj_price(tok), p2)
            await ingest(pub, obs, pub.subj_volume(tok), volume_event(tok))
            await ingest(pub, obs, pub.subj_trade(tok), trade_event(tok))
            async with await Client.connect(odin.ws_url(odin.token())) as c:
                await c.send({"type": "subscribe", "channels": [f"token.{tok}"], "id": "snap"})
                m = await c.expect("subscribed")
                assert m["id"] == "snap"
                raw, snap = await c.recv_raw()
                assert raw == d2.decode(), f"snapshot is not the latest price_update's bytes: {raw}"
                assert await c.barrier() == [], "more than one snapshot frame (only the latest price_update)"

    run(t())


def test_snapshot_unaffected_by_dropped_events(odin, nats_server):
    """Duplicates and invalid events are dropped at ingest: they never become the snapshot."""
    async def t():
        tok = uid("SD")
        async with await subscribed_client(odin, [f"token.{tok}"]) as obs, Publisher(nats_server.url) as pub:
            good = price_event(tok, 1.0)
            d = await ingest(pub, obs, pub.subj_price(tok), good)
            await pub.event(pub.subj_price(tok), dict(good, price=666.0))  # same nonce: duplicate
            nobody = price_event(tok, 777.0)
            nobody.pop("nonce")
            await pub.raw(pub.subj_price(tok), dumps(nobody), header_nonce=uid("h-"))  # no body nonce
            await ingest(pub, obs, pub.subj_volume(tok), volume_event(tok))  # ordering barrier
            async with await Client.connect(odin.ws_url(odin.token())) as c:
                await c.subscribe([f"token.{tok}"])
                raw, _ = await c.recv_raw()
                assert raw == d.decode()

    run(t())


def test_token_named_batch_is_an_ordinary_token(odin, nats_server):
    """'batch' is a valid tokenId: token.batch gets odin.token.batch.price; the batch channel
    gets odin.token.batch.update, and neither leaks into the other."""
    async def t():
        async with await subscribed_client(odin, ["token.batch"]) as ct, \
                await subscribed_client(odin, ["batch"]) as cb, Publisher(nats_server.url) as pub:
            bev, bdata = await pub.batch([{"tokenId": "batch", "price": 1.0}])
            pev, pdata = await pub.price("batch", 3.0)
            before = await expect_raw(ct, pdata, pev["nonce"])
            assert non_heartbeat(before) == [] and non_heartbeat(await ct.drain_quiet()) == []
            before = await expect_raw(cb, bdata, bev["nonce"])
            assert non_heartbeat(before) == [] and non_heartbeat(await cb.drain_quiet()) == []

    run(t())


def test_no_snapshot_for_unknown_token(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.subscribe([f"token.{uid('N')}"])
            assert await c.barrier() == []

    run(t())


def test_no_snapshot_when_only_volume_or_trade_known(odin, nats_server):
    async def t():
        tok = uid("K")
        async with await subscribed_client(odin, [f"token.{tok}"]) as obs, Publisher(nats_server.url) as pub:
            await ingest(pub, obs, pub.subj_volume(tok), volume_event(tok))
            await ingest(pub, obs, pub.subj_trade(tok), trade_event(tok))
            async with await Client.connect(odin.ws_url(odin.token())) as c:
                await c.subscribe([f"token.{tok}"])
                assert await c.barrier() == []

    run(t())


def test_snapshot_only_for_newly_subscribed_channels(odin, nats_server):
    async def t():
        tok = uid("R")
        async with await subscribed_client(odin, [f"token.{tok}"]) as obs, Publisher(nats_server.url) as pub:
            p = price_event(tok, 7.0)
            d = await ingest(pub, obs, pub.subj_price(tok), p)
            async with await Client.connect(odin.ws_url(odin.token())) as c:
                await c.subscribe([f"token.{tok}"])
                raw, _ = await c.recv_raw()
                assert raw == d.decode()
                await c.subscribe([f"token.{tok}"])  # already held: not newly subscribed
                assert await c.barrier() == [], "snapshot re-sent for a channel already held"

    run(t())


def test_snapshot_resent_after_unsubscribe_same_nonce(odin, nats_server):
    """Guarantee 1's one exception: resubscribing re-sends the latest price, same bytes and nonce."""
    async def t():
        tok = uid("L")
        async with await subscribed_client(odin, [f"token.{tok}"]) as c, Publisher(nats_server.url) as pub:
            p = price_event(tok, 7.0)
            d = await pub.event(pub.subj_price(tok), p)
            await expect_raw(c, d, p["nonce"])
            await c.unsubscribe([f"token.{tok}"])
            await c.subscribe([f"token.{tok}"])
            raw, m = await c.recv_raw()
            assert raw == d.decode() and m["nonce"] == p["nonce"]

    run(t())


def test_subscribe_answer_order_subscribed_snapshots_errors(odin, nats_server):
    """Section 8: one subscribed, then the snapshots, then one invalid_channel per refused channel,
    the subscribed and errors carrying the request's id; valid channels still subscribe."""
    async def t():
        a, b = uid("A"), uid("B")
        async with await subscribed_client(odin, [f"token.{a}", f"token.{b}"]) as obs, \
                Publisher(nats_server.url) as pub:
            da = await ingest(pub, obs, pub.subj_price(a), price_event(a, 1.0))
            db = await ingest(pub, obs, pub.subj_price(b), price_event(b, 2.0))
            async with await Client.connect(odin.ws_url(odin.token())) as c:
                await c.send({"type": "subscribe", "id": "mix",
                              "channels": [f"token.{a}", "bogus", f"token.{b}", "token.bad*id"]})
                m = await c.expect("subscribed")
                assert m["id"] == "mix" and sorted(m["channels"]) == sorted([f"token.{a}", f"token.{b}"]), m
                snaps = {(await c.recv_raw())[0], (await c.recv_raw())[0]}
                assert snaps == {da.decode(), db.decode()}
                errs = [await c.expect("error"), await c.expect("error")]
                for e in errs:
                    assert e["code"] == "invalid_channel" and e["id"] == "mix", e
                assert "bogus" in errs[0]["message"] and "token.bad*id" in errs[1]["message"], errs
                assert await c.barrier() == []

    run(t())


def test_live_events_follow_subscribed(odin, nats_server):
    async def t():
        tok = uid("G")
        async with await Client.connect(odin.ws_url(odin.token())) as c, Publisher(nats_server.url) as pub:
            await c.subscribe([f"token.{tok}"])
            ev, data = await pub.price(tok, 1.0)
            await expect_raw(c, data, ev["nonce"])
            await c.unsubscribe([f"token.{tok}"])
            await pub.price(tok, 2.0)  # not delivered after unsubscribed
            await c.subscribe(["market"])
            mev, mdata = await pub.market()
            before = await expect_raw(c, mdata, mev["nonce"])
            # the token's latest price comes back only as a snapshot on resubscribe, not live
            assert [m for _, m in before if m["type"] == "price_update"] == []
            assert [m for _, m in await c.drain_quiet() if m["type"] == "price_update"] == []

    run(t())
