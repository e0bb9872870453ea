"""PROTOCOL.md section 2 (compression) and the counters of section 6: with `--compression`,
a client offering permessage-deflate gets the documented answer and its events compressed
(each event compressed once however many such clients), a client not offering it gets the
same events plain, and a gateway without the flag declines the offer."""

from odinlib import Client, Publisher, run, uid

ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def extensions(c: Client) -> str | None:
    return c.ws.response.headers.get("Sec-WebSocket-Extensions")


def test_compressed_and_plain_clients_get_the_same_events(odin_factory, nats_server):
    gw = odin_factory(args=["--compression"], name="compression")

    async def t():
        tok = uid("Z")
        zipped = [await Client.connect(gw.ws_url(gw.token()), compression="deflate") for _ in range(2)]
        plain = await Client.connect(gw.ws_url(gw.token()), compression=None)
        clients = zipped + [plain]
        try:
            assert [extensions(c) for c in zipped] == [ANSWER, ANSWER]
            assert extensions(plain) is None
            for c in clients:
                await c.subscribe([f"token.{tok}"])
            before = gw.stats()
            async with Publisher(nats_server.url) as pub:
                sent = [await pub.price(tok, 100.0 + i) for i in range(3)]
            for c in clients:
                for ev, data in sent:
                    _, (raw, _) = await c.until_nonce(ev["nonce"])
                    assert raw == data.decode("utf-8")
            after = gw.stats()
            assert after["eventsCompressed"] - before["eventsCompressed"] == 3
            assert after["messagesCompressed"] - before["messagesCompressed"] == 6
            assert after["compressedConnections"] >= 2
        finally:
            for c in clients:
                await c.close()

    run(t())


def test_a_gateway_without_the_flag_declines(odin_factory):
    gw = odin_factory(name="no-compression")
    if "--compression" in gw.args:
        return  # the whole suite runs compressed: nothing to decline here

    async def t():
        c = await Client.connect(gw.ws_url(gw.token()), compression="deflate")
        try:
            assert extensions(c) is None
        finally:
            await c.close()

    run(t())
