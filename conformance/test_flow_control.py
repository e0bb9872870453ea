"""PROTOCOL.md guarantee 5 (bounded memory, conflation, slow consumers) and its section 8 reading.

A "slow" client is a raw socket with a tiny receive buffer that stops reading."""

import asyncio
import json
import time

import pytest

from odinlib import Client, Publisher, RawWS, run, trade_event, price_event, uid, wait_until, await_until

PAD = "p" * 900  # ~1 KiB events (unknown extra fields are allowed and forwarded)


async def slow_client(server, channels):
    r = await RawWS.connect(server.host, server.ws_port, f"/ws?token={server.token()}", rcvbuf=4096,
                            stream_limit=1024)
    assert (await r.read_json())["type"] == "connection_established"
    await r.send_text(json.dumps({"type": "subscribe", "channels": channels}))
    assert (await r.read_json())["type"] == "subscribed"
    return r


async def read_until_end(r, timeout):
    """Read text frames until EOF/close; return (messages, close_code or None)."""
    msgs, code = [], None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fin, op, p = await r.read_frame(max(0.01, deadline - time.monotonic()))
        except (asyncio.IncompleteReadError, ConnectionError):
            return msgs, code
        if op == 0x1:
            msgs.append(json.loads(p))
        elif op == 0x8:
            code = int.from_bytes(p[:2], "big") if len(p) >= 2 else None
            return msgs, code


async def paced(pub, pacer, events, chunk=10):
    """Publish (subject, event) pairs in chunks, each chunk only once the pacing client (which
    reads as fast as it can) has received the previous one: a client that keeps up stays
    'not behind', while a client that does not read falls further behind with every chunk."""
    for i in range(0, len(events), chunk):
        part = events[i:i + chunk]
        for subject, ev in part:
            await pub.event(subject, ev, flush=False)
        await pub.nc.flush()
        want = {ev["nonce"] for _, ev in part}
        while want:
            m = await pacer.recv(10)
            want.discard(m["nonce"])
            pacer.log.clear()


@pytest.fixture(scope="module")
def odin_conflate(odin_factory):
    return odin_factory(args=["--conflate-above-bytes", "16384", "--max-queue-bytes", "1048576"], name="conflate")


def test_conflation_slow_reader_ends_on_latest_price(odin_conflate, nats_server):
    """A slow reader's pending price updates are conflated (counted); it still ends on the latest
    price, in order; trades are never conflated; a client that keeps up gets every update."""
    s = odin_conflate

    async def t():
        tok = uid("C")
        n_prices, trade_every = 6000, 100  # ~6 MiB: more than the kernel's socket buffers absorb
        r = await slow_client(s, [f"token.{tok}"])
        fast = await Client.connect(s.ws_url(s.token()))
        await fast.subscribe([f"token.{tok}"])
        try:
            before = s.stats()["conflated"]
            async with Publisher(nats_server.url) as pub:
                events, trade_nonces = [], []
                for i in range(n_prices):
                    events.append((pub.subj_price(tok),
                                   price_event(tok, 100.0 + i, nonce=f"cp-{tok}-{i:05d}", seq=i, pad=PAD)))
                    if i % trade_every == 0:
                        tr = trade_event(tok, nonce=f"ct-{tok}-{i:05d}", pad=PAD)
                        events.append((pub.subj_trade(tok), tr))
                        trade_nonces.append(tr["nonce"])
                # the fast client paces the publisher and so receives every event (checked inside)
                await paced(pub, fast, events)
            last_nonce = f"cp-{tok}-{n_prices - 1:05d}"

            await await_until(lambda: s.stats()["conflated"] > before, 5, what="conflated counter to grow")

            # now the slow client reads everything: it ends on the latest price, all trades there
            got, want_trades = [], set(trade_nonces)
            seen_last = False
            while not (seen_last and not want_trades):
                m = await r.read_json(10)
                got.append(m)
                seen_last = seen_last or m["nonce"] == last_nonce
                want_trades.discard(m["nonce"])
            prices = [m["seq"] for m in got if m["type"] == "price_update"]
            trades = [m["nonce"] for m in got if m["type"] == "trade_executed"]
            assert prices[-1] == n_prices - 1, "the slow reader does not end on the latest price"
            assert prices == sorted(prices) and len(set(prices)) == len(prices), "per-token order broken"
            assert len(prices) < n_prices, "nothing was conflated for the slow reader"
            assert trades == trade_nonces, "trades must never be conflated (nor reordered)"
            assert s.stats()["slowConsumerDisconnects"] == 0
            print(f"slow reader got {len(prices)} of {n_prices} prices")
        finally:
            r.close()
            await fast.close()

    run(t(), timeout=90)


@pytest.fixture(scope="module")
def odin_smallq(odin_factory):
    return odin_factory(args=["--max-queue-bytes", "65536", "--conflate-above-bytes", "16384",
                              "--write-timeout", "30s"], name="smallq")


def test_queue_overflow_closes_4008_and_counts(odin_smallq, nats_server):
    """Trades cannot be conflated: a reader that stops makes its queue exceed --max-queue-bytes,
    it is closed with 4008 (or dropped) and counted; another client is not slowed down."""
    s = odin_smallq

    async def t():
        tok = uid("Q")
        r = await slow_client(s, [f"token.{tok}"])
        other = await Client.connect(s.ws_url(s.token()))
        await other.subscribe([f"token.{tok}"])
        try:
            before = s.stats()["slowConsumerDisconnects"]
            t0 = time.monotonic()
            async with Publisher(nats_server.url) as pub:
                events = [(pub.subj_trade(tok), trade_event(tok, pad=PAD)) for _ in range(6000)]  # ~6 MiB
                await paced(pub, other, events)
            await await_until(lambda: s.stats()["slowConsumerDisconnects"] == before + 1, 5,
                              what="slowConsumerDisconnects +1")
            assert time.monotonic() - t0 < 25, "closed by the write timeout, not by the queue bound"
            msgs, code = await read_until_end(r, 15)
            # either the close frame 4008 got through, or the TCP connection was dropped without it
            assert code in (4008, None), f"close code {code}"
            print(f"slow consumer: {len(msgs)} frames drained, close code {code}")
            await other.barrier()
        finally:
            r.close()
            await other.close()

    run(t(), timeout=90)


@pytest.fixture(scope="module")
def odin_wt(odin_factory):
    return odin_factory(args=["--write-timeout", "2s", "--max-queue-bytes", str(64 * 1024 * 1024)], name="wt")


def test_write_timeout_closes_4008(odin_wt, nats_server):
    """A socket that accepts nothing for --write-timeout is closed 4008 (or dropped) and counted."""
    s = odin_wt

    async def t():
        tok = uid("W")
        r = await slow_client(s, [f"token.{tok}"])
        try:
            before = s.stats()["slowConsumerDisconnects"]
            async with Publisher(nats_server.url) as pub:
                # ~6 MiB: more than the kernel buffers take, far less than the 64 MiB queue bound
                for i in range(6000):
                    await pub.trade(tok, flush=False, pad=PAD)
                await pub.nc.flush()
            t0 = time.monotonic()
            await await_until(lambda: s.stats()["slowConsumerDisconnects"] == before + 1, 8,
                              what="slowConsumerDisconnects +1")
            waited = time.monotonic() - t0
            assert waited >= 1.0, f"disconnected after {waited:.2f}s, before the 2 s write timeout"
            # the socket is full, so the close frame cannot be written: after the 1 s closing grace
            # the TCP connection must be gone; draining what the kernel holds must reach its end
            await asyncio.sleep(1.5)  # let the grace lapse (not waiting for an event)
            msgs, code = await read_until_end(r, 15)
            assert code in (4008, None), f"close code {code}"
            print(f"write timeout: {len(msgs)} frames drained, close code {code}, after {waited:.2f}s")
        finally:
            r.close()

    run(t(), timeout=90)
