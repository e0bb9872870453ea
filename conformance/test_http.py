"""PROTOCOL.md section 6 (HTTP endpoints) and the /metrics reading of section 8."""

import re

import pytest

from odinlib import Client, Publisher, http_get, now_ms, price_event, run, uid, wait_until, await_until

STATS_FIELDS = {
    "serverId": str, "uptimeSeconds": (int, float), "connectionCount": int, "messagesReceived": int,
    "messagesDelivered": int, "duplicatesDropped": int, "invalidEvents": int, "conflated": int,
    "slowConsumerDisconnects": int, "authFailures": int, "addressLimited": int,
    "tokensHeld": int, "tokensEvicted": int, "tokensRefused": int,
    "tlsReloads": int, "tlsReloadFailures": int, "tlsHandshakeFailures": int,
    "averageLatency": (int, float),
    "peakLatency": (int, float), "natsConnected": bool,
}

METRIC_COUNTERS = {
    "odin_messages_received_total": "messagesReceived",
    "odin_messages_delivered_total": "messagesDelivered",
    "odin_duplicates_dropped_total": "duplicatesDropped",
    "odin_invalid_events_total": "invalidEvents",
    "odin_conflated_total": "conflated",
    "odin_slow_consumer_disconnects_total": "slowConsumerDisconnects",
    "odin_auth_failures_total": "authFailures",
}


@pytest.fixture(scope="module")
def fresh(odin_factory):
    """A gateway nobody else talks to, for exact figures."""
    return odin_factory(args=["--server-id", "stats-server"], name="stats")


def test_health_ok(odin):
    r = odin.health()
    assert r.status == 200
    body = r.json()
    assert body["status"] == "ok" and body["nats"] == "connected", body


def test_stats_fields_and_types(odin):
    r = http_get(odin.http_base, "/stats")
    assert r.status == 200
    st = r.json()
    for k, ty in STATS_FIELDS.items():
        assert k in st, f"/stats lacks {k}: {st}"
        assert isinstance(st[k], ty) and (ty is bool or not isinstance(st[k], bool)), f"{k}={st[k]!r}"
    assert st["natsConnected"] is True
    assert st["serverId"] == "conformance-main"
    assert st["uptimeSeconds"] >= 0


def test_stats_latency_zero_before_any_event(fresh):
    st = fresh.stats()
    assert st["averageLatency"] == 0 and st["peakLatency"] == 0, st
    assert st["messagesReceived"] == 0 and st["messagesDelivered"] == 0, st


def test_stats_connection_count(fresh):
    async def t():
        assert fresh.stats()["connectionCount"] == 0
        a = await Client.connect(fresh.ws_url(fresh.token()))
        b = await Client.connect(fresh.ws_url(fresh.token()))
        await await_until(lambda: fresh.stats()["connectionCount"] == 2, 3, what="connectionCount == 2")
        await a.close()
        await await_until(lambda: fresh.stats()["connectionCount"] == 1, 3, what="connectionCount == 1")
        await b.close()
        await await_until(lambda: fresh.stats()["connectionCount"] == 0, 3, what="connectionCount == 0")

    run(t())


def test_stats_received_delivered_and_latency(fresh, nats_server):
    """messagesReceived counts events from NATS; messagesDelivered frames sent; latency in ms from
    the event's timestamp to ingest."""
    async def t():
        tok = uid("ST")
        st0 = fresh.stats()
        async with await Client.connect(fresh.ws_url(fresh.token())) as c1, \
                await Client.connect(fresh.ws_url(fresh.token())) as c2, Publisher(nats_server.url) as pub:
            await c1.subscribe([f"token.{tok}"])
            await c2.subscribe([f"token.{tok}"])
            ev = price_event(tok, 1.0, ts=now_ms() - 1500.0)
            await pub.event(pub.subj_price(tok), ev)
            await c1.until_nonce(ev["nonce"])
            await c2.until_nonce(ev["nonce"])
            st = await await_until(lambda: (lambda s: s if s["messagesReceived"] == st0["messagesReceived"] + 1
                                            else None)(fresh.stats()), 3, what="messagesReceived +1")
            # two connection_established, two subscribed, two events at least
            assert st["messagesDelivered"] - st0["messagesDelivered"] >= 2, (st0, st)
            assert 1500 <= st["peakLatency"] < 1500 + 3000, st
            assert 0 < st["averageLatency"] <= st["peakLatency"], st

    run(t())


def _parse_metrics(text):
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, ty = line.split(None, 3)
            types[name] = ty
        elif line and not line.startswith("#"):
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            assert m, f"bad sample line {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples, types


def test_metrics_openmetrics_format_and_names(fresh):
    r = http_get(fresh.http_base, "/metrics")
    assert r.status == 200
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/openmetrics-text"), f"Content-Type {ctype!r}"
    text = r.body.decode()
    assert text.rstrip("\n").endswith("# EOF"), "OpenMetrics exposition must end with # EOF"
    samples, types = _parse_metrics(text)
    assert types.get("odin_connections") == "gauge", types
    assert "odin_connections" in samples
    for name in METRIC_COUNTERS:
        assert name in samples, f"missing counter sample {name}"
        family = name[: -len("_total")]
        assert types.get(family) == "counter" or types.get(name) == "counter", f"{name} not typed counter"
    assert types.get("odin_ingest_latency_seconds") == "histogram", types
    assert any(k.startswith("odin_ingest_latency_seconds_bucket{") and 'le="+Inf"' in k for k in samples)
    assert "odin_ingest_latency_seconds_sum" in samples and "odin_ingest_latency_seconds_count" in samples


def test_metrics_match_stats(fresh):
    """'the same figures': on a quiet server /metrics and /stats agree."""
    st = fresh.stats()
    samples, _ = _parse_metrics(http_get(fresh.http_base, "/metrics").body.decode())
    assert samples["odin_connections"] == st["connectionCount"]
    for name, key in METRIC_COUNTERS.items():
        assert samples[name] == st[key], f"{name}={samples[name]} but /stats {key}={st[key]}"
    # one event with a 1.5 s latency was ingested by the previous test
    assert samples["odin_ingest_latency_seconds_count"] >= 1
    assert samples["odin_ingest_latency_seconds_sum"] >= 1.5
