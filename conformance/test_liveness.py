"""PROTOCOL.md guarantee 4 (liveness) and the mid-connection expiry of section 2."""

import asyncio
import time

import pytest

from odinlib import Client, Closed, RawWS, run

HB_MS = 400


@pytest.fixture(scope="module")
def odin_hb(odin_factory):
    return odin_factory(args=["--heartbeat-interval-ms", str(HB_MS), "--server-id", "hb-server"], name="hb")


def test_greeting_announces_configured_heartbeat(odin_hb):
    async def t():
        async with await Client.connect(odin_hb.ws_url(odin_hb.token())) as c:
            assert c.greeting["heartbeatIntervalMs"] == HB_MS

    run(t())


def test_heartbeat_messages_every_interval(odin_hb):
    async def t():
        async with await Client.connect(odin_hb.ws_url(odin_hb.token())) as c:
            times, beats = [], []
            for _ in range(4):
                m = await c.recv(timeout=3 * HB_MS / 1000, skip_heartbeats=False)
                assert m["type"] == "heartbeat", m
                times.append(time.monotonic())
                beats.append(m)
            for m in beats:
                assert m["serverId"] == "hb-server", m
            gaps = [b - a for a, b in zip(times, times[1:])]
            for g in gaps:
                assert 0.5 * HB_MS / 1000 <= g <= 2 * HB_MS / 1000, f"heartbeat gaps {gaps}"
            assert len({m["nonce"] for m in beats}) == 4

    run(t())


def test_websocket_pings_every_interval_and_answering_keeps_open(odin_hb):
    """A raw client sees WebSocket pings; answering them keeps the connection open."""
    async def t():
        r = await RawWS.connect(odin_hb.host, odin_hb.ws_port, f"/ws?token={odin_hb.token()}")
        try:
            pings, heartbeats = 0, 0
            deadline = time.monotonic() + 6 * HB_MS / 1000
            while time.monotonic() < deadline:
                try:
                    fin, op, p = await r.read_frame(deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                assert op != 0x8, f"closed although pings were answered: {p!r}"
                if op == 0x9:
                    pings += 1
                    await r.send_frame(0xA, p)
                elif op == 0x1 and b'"heartbeat"' in p:
                    heartbeats += 1
            assert pings >= 4, f"{pings} pings in {6 * HB_MS} ms"
            assert heartbeats >= 4, f"{heartbeats} heartbeats in {6 * HB_MS} ms"
        finally:
            r.close()

    run(t())


def test_unanswered_ping_closes_4002(odin_hb):
    async def t():
        r = await RawWS.connect(odin_hb.host, odin_hb.ws_port, f"/ws?token={odin_hb.token()}")
        try:
            t0 = time.monotonic()
            first_ping = None
            while True:
                fin, op, p = await r.read_frame(5 * HB_MS / 1000 + 2)
                if op == 0x9 and first_ping is None:
                    first_ping = time.monotonic()
                if op == 0x8:
                    code = int.from_bytes(p[:2], "big") if len(p) >= 2 else None
                    break
            assert first_ping is not None, "closed before any ping"
            assert code == 4002, f"close code {code} reason {p[2:]!r}"
            # closed when the next ping is due (one interval after the first), not much later
            elapsed = time.monotonic() - first_ping
            assert 0.5 * HB_MS / 1000 <= elapsed <= 2.5 * HB_MS / 1000 + 0.5, elapsed
        finally:
            r.close()

    run(t())


def test_library_client_answering_pings_stays_open(odin_hb):
    async def t():
        async with await Client.connect(odin_hb.ws_url(odin_hb.token())) as c:
            end = time.monotonic() + 5 * HB_MS / 1000
            while time.monotonic() < end:
                try:
                    await c.recv(timeout=end - time.monotonic())
                except asyncio.TimeoutError:
                    break
            assert len(c.heartbeats) >= 3
            await c.barrier()

    run(t())


def test_token_expiry_mid_connection_closes_4001(odin):
    async def t():
        exp = int(time.time()) + 2
        async with await Client.connect(odin.ws_url(odin.token(exp=exp))) as c:
            code, reason, seen = await c.expect_close(timeout=6)
            closed_at = time.time()
            assert code == 4001, (code, reason)
            assert closed_at >= exp - 0.05, f"closed {exp - closed_at:.2f}s before exp"
            assert closed_at <= exp + 1.5, f"closed {closed_at - exp:.2f}s after exp"

    run(t())
