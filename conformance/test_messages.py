"""PROTOCOL.md section 3 (messages) and the 'one answer per request' reading of section 8."""

import time

from odinlib import Client, now_ms, run, uid


def assert_recent_ms(ts):
    assert abs(ts - now_ms()) < 60_000, f"timestamp {ts} is not 'milliseconds since the Unix epoch' (now {now_ms()})"


def test_greeting_connection_established(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            g = c.greeting
            # the very first frame of the connection
            assert c.log[0][1] is g
            assert g["type"] == "connection_established"
            assert isinstance(g["clientId"], str) and g["clientId"]
            assert isinstance(g["serverId"], str) and g["serverId"]
            assert g["protocolVersion"] == 1 and isinstance(g["protocolVersion"], int)
            assert isinstance(g["heartbeatIntervalMs"], (int, float)) and not isinstance(g["heartbeatIntervalMs"], bool)
            assert_recent_ms(g["timestamp"])

    run(t())


def test_greeting_server_id_and_default_heartbeat(odin):
    """--server-id sets serverId; the default heartbeat interval is 30 s."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            assert c.greeting["serverId"] == "conformance-main"
            assert c.greeting["heartbeatIntervalMs"] == 30000
            assert odin.stats()["serverId"] == "conformance-main"

    run(t())


def test_frames_are_camelcase_text_json_objects(odin):
    """Every frame is a text frame holding one JSON object with type/timestamp/nonce (checked on receive)."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.subscribe(["batch"], id_="a")
            await c.unsubscribe(["batch"], id_="b")
            await c.send({"type": "ping", "id": "c"})
            await c.expect("pong")
            await c.send({"type": "nope"})
            await c.expect("error")
            for raw, m in c.log:
                for k in m:
                    assert "_" not in k and k[:1].islower(), f"field {k!r} is not camelCase in {raw}"
                assert_recent_ms(m["timestamp"])

    run(t())


def test_ping_with_id_gets_pong_with_id(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.send({"type": "ping", "id": "p-1"})
            m = await c.expect("pong")
            assert m["id"] == "p-1"

    run(t())


def test_ping_without_id_gets_pong_without_id(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.send({"type": "ping"})
            m = await c.expect("pong")
            assert "id" not in m, f"pong carries an id although the ping had none: {m}"

    run(t())


def test_server_messages_have_distinct_nonces(odin):
    """'nonce: unique per logical event' - five pongs are five events."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            for i in range(5):
                await c.send({"type": "ping", "id": str(i)})
            nonces = [(await c.expect("pong"))["nonce"] for _ in range(5)]
            nonces.append(c.greeting["nonce"])
            assert len(set(nonces)) == 6, nonces

    run(t())


def test_subscribe_with_id_echoes_id(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            tok = uid("S")
            m = await c.subscribe([f"token.{tok}", "batch", "market"], id_="sub-1")
            assert m["id"] == "sub-1"
            assert isinstance(m["channels"], list)
            assert sorted(m["channels"]) == sorted([f"token.{tok}", "batch", "market"])
            assert await c.barrier() == []  # no snapshot for an unknown token, nothing else

    run(t())


def test_subscribe_without_id(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            m = await c.subscribe(["batch"])
            assert m["channels"] == ["batch"]
            assert "id" not in m, m

    run(t())


def test_unsubscribe_with_id(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.subscribe(["market"])
            m = await c.unsubscribe(["market"], id_="u-1")
            assert m["channels"] == ["market"]
            assert m["id"] == "u-1"

    run(t())


def test_unsubscribe_not_held_is_not_an_error(odin):
    """Section 8: unsubscribe lists every valid channel of the request; not held is not an error."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            tok = uid("U")
            m = await c.unsubscribe([f"token.{tok}", "batch"], id_="u-2")
            assert sorted(m["channels"]) == sorted([f"token.{tok}", "batch"])
            assert m["id"] == "u-2"
            assert await c.barrier() == []

    run(t())


def test_subscribe_repeated_channel_counts_once(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            m = await c.subscribe(["batch", "batch", "market", "batch"], id_="r")
            assert sorted(m["channels"]) == ["batch", "market"], m
            assert await c.barrier() == []

    run(t())


def test_subscribe_only_invalid_channels_gets_empty_subscribed(odin):
    """Section 8: every subscribe gets exactly one subscribed, possibly listing none."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            m = await c.subscribe(["nope"], id_="e")
            assert m["channels"] == [] and m["id"] == "e"
            err = await c.expect("error")
            assert err["code"] == "invalid_channel" and err["id"] == "e"
            assert await c.barrier() == []

    run(t())


def test_resubscribe_held_channel(odin):
    """Subscribing to a channel already held: one subscribed listing it (held from that request)."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.subscribe(["batch"])
            m = await c.subscribe(["batch"], id_="again")
            assert m["channels"] == ["batch"] and m["id"] == "again"
            assert await c.barrier() == []

    run(t())


def test_client_message_may_carry_timestamp_and_nonce(odin):
    """'Client messages carry no timestamp/nonce requirement': having them is fine too."""
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.send({"type": "ping", "id": "tn", "timestamp": now_ms(), "nonce": "client-nonce"})
            assert (await c.expect("pong"))["id"] == "tn"
            await c.send({"type": "subscribe", "channels": ["batch"], "timestamp": 1, "nonce": "x"})
            assert (await c.expect("subscribed"))["channels"] == ["batch"]

    run(t())


def test_subscribe_empty_channel_list(odin):
    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            m = await c.subscribe([], id_="none")
            assert m["channels"] == [] and m["id"] == "none"
            assert await c.barrier() == []

    run(t())
