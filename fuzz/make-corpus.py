#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/<target>/).

Seeds are real messages (PROTOCOL.md's examples and events of
fixtures/recordings/small-market.jsonl) and the edge cases the protocol names,
one file per seed, named for what it is. Run it again after changing it; it
rewrites the five directories (standard library only):

    python3 fuzz/make-corpus.py
"""

import base64
import hashlib
import hmac
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# odin_server::auth::DEV_SECRET, the secret the jwt_claims target signs with.
DEV_SECRET = b"odin-development-secret-do-not-use-in-production"
MAX_EXP = 253_402_300_799
FAR = 4_102_444_800  # 2100-01-01: the committed tokens stay valid


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, claims, secret=DEV_SECRET, digest=hashlib.sha256):
    h = header if isinstance(header, str) else compact(header)
    c = claims if isinstance(claims, str) else compact(claims)
    signing = f"{b64(h.encode())}.{b64(c.encode())}"
    sig = hmac.new(secret, signing.encode(), digest).digest()
    return f"{signing}.{b64(sig)}"


def recording():
    path = os.path.join(ROOT, "fixtures", "recordings", "small-market.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def client_message():
    s = {
        "subscribe": {"type": "subscribe", "channels": ["token.BTC", "batch"]},
        "subscribe-with-id": {"type": "subscribe", "channels": ["token.ETH", "market"], "id": "7"},
        "subscribe-all-kinds": {"type": "subscribe", "channels": ["token.a_b-1", "batch", "market"]},
        "subscribe-duplicates": {"type": "subscribe", "channels": ["token.BTC", "token.BTC", "batch"]},
        "subscribe-empty-list": {"type": "subscribe", "channels": []},
        "subscribe-invalid-channels": {
            "type": "subscribe",
            "channels": ["token.*", "token.>", "token.a.b", "token.", "token", "tokens.a",
                         "BATCH", "market ", "token. a", "", "token.é", "token.BTC"],
            "id": "bad"},
        "subscribe-longest-id": {"type": "subscribe", "channels": ["token." + "x" * 64, "token." + "x" * 65]},
        "unsubscribe": {"type": "unsubscribe", "channels": ["token.BTC"], "id": "8"},
        "ping": {"type": "ping"},
        "ping-with-id": {"type": "ping", "id": "p-1"},
        "ping-extra-fields": {"type": "ping", "id": "x", "extra": [1, {"a": None}]},
        "refused-channel-not-string": {"type": "subscribe", "channels": [1]},
        "refused-no-channels": {"type": "subscribe"},
        "refused-unknown-type": {"type": "dance"},
        "refused-no-type": {"channels": []},
        "refused-numeric-id": {"type": "ping", "id": 5},
        "refused-null-channels": {"type": "subscribe", "channels": None, "id": "n"},
    }
    seeds = {k: compact(v) for k, v in s.items()}
    seeds.update({
        "refused-array": "[]",
        "array-ping": '["ping"]',
        "array-subscribe": '["subscribe",["token.BTC"],"7"]',
        "refused-not-json": "nope",
        "refused-truncated": '{"type":"subscribe","channels":["token.BTC"',
        "duplicate-type-key": '{"type":"ping","type":"subscribe","channels":[]}',
        "escaped-channel": '{"type":"subscribe","channels":["token.\\u0042TC","\\u0062atch"]}',
        "whitespace": ' { "type" : "unsubscribe" , "channels" : [ "market" ] } ',
        "deep-nesting": '{"type":"ping","x":' + "[" * 140 + "]" * 140 + "}",
    })
    # Server messages, as clients read them.
    for line in recording()[:12]:
        seeds.setdefault("server-" + line["event"]["type"], compact(line["event"]))
    seeds.update({
        "server-connection-established": compact({
            "type": "connection_established", "clientId": "c1", "serverId": "s1",
            "protocolVersion": 1, "heartbeatIntervalMs": 30000,
            "timestamp": 1764288000123.456, "nonce": "n1"}),
        "server-error": compact({"type": "error", "code": "invalid_channel",
                                 "message": "invalid channel", "id": "7",
                                 "timestamp": 1.5, "nonce": "n2"}),
        "server-subscribed": compact({"type": "subscribed", "channels": ["token.BTC"], "id": "7",
                                      "timestamp": 1e15, "nonce": "n3"}),
        "server-pong": compact({"type": "pong", "timestamp": 5e-324, "nonce": "n4"}),
        "server-heartbeat": compact({"type": "heartbeat", "serverId": "s",
                                     "timestamp": 1.7976931348623157e308, "nonce": "n5"}),
        "server-market-stats-float-count": compact({
            "type": "market_stats", "totalVolume24h": 1.0, "totalTrades24h": 42.0,
            "activeTokens": 18446744073709551615, "timestamp": 1.0, "nonce": "n6"}),
    })
    return seeds


def channel_grammar():
    strings = [
        "batch", "market", "token.BTC", "token.a_b-1", "token." + "x" * 64, "token." + "x" * 65,
        "token.*", "token.>", "token.a.b", "token.", "token", "tokens.a", "BATCH", "market ",
        "token. a", "", "token.é", "token.BTC\n", "BTC", "a_b-C9", "x" * 64, "x" * 65, "a.b", "*",
        ">", "a b", "é", "a/b", "é" * 128, "é" * 129, "n" * 128, "n" * 129,
        "odin.token.BTC.price", "odin.token.BTC.volume", "odin.trades.BTC",
        "odin.token.batch.update", "odin.market.statistics", "odin.token.batch.price",
        "odin.token.BTC.price.x", "odin.token.BTC", "odin.trades", "odin.trades.a.b",
        "odin.token.*.price", "odin.>", "odinx.token.BTC.price", "odin.market.statistics.x",
        "odin", "acme.odin\nacme.odin.trades.X", "acme.odin\nodin.trades.X",
        "a..b\nodin.trades.X", "a.\nodin.trades.X", "*\nodin.trades.X", "\nodin.trades.X",
        "odin\nodin.token." + "y" * 64 + ".volume",
    ]
    def name(i, s):
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in s)
        return f"{i:02d}-{safe}"[:32]

    return {name(i, s): s for i, s in enumerate(strings)}


def nats_event():
    seeds = {}
    lines = recording()
    for line in lines:
        kind = line["event"]["type"]
        n = sum(1 for k in seeds if k.startswith(kind))
        if n < 3:
            seeds[f"{kind}-{n}"] = compact(line["event"])
    price = next(l["event"] for l in lines if l["event"]["type"] == "price_update")
    trade = next(l["event"] for l in lines if l["event"]["type"] == "trade_executed")
    volume = next(l["event"] for l in lines if l["event"]["type"] == "volume_update")
    batch = next(l["event"] for l in lines if l["event"]["type"] == "batch_update")
    market = next(l["event"] for l in lines if l["event"]["type"] == "market_stats")

    def w(**kw):
        return lambda e: {**e, **kw}

    variants = {
        "price-zero": (price, w(price=0.0)),
        "price-negative": (price, w(price=-5.0)),
        "price-tiny": (price, w(price=5e-324, previousPrice=5e-324)),
        "price-huge": (price, w(price=1.7976931348623157e308)),
        "price-previous-zero": (price, w(previousPrice=0.0)),
        "price-scheduled-at": (price, w(scheduledAt=1795832705500.0)),
        "price-timestamp-zero": (price, w(timestamp=0)),
        "price-too-old": (price, w(timestamp=1795832705542.0 - 3_600_001)),
        "price-too-far-ahead": (price, w(timestamp=1795832705542.0 + 61_000)),
        "price-bad-token": (price, w(tokenId="a.b")),
        "price-empty-nonce": (price, w(nonce="")),
        "price-long-nonce": (price, w(nonce="é" * 128)),
        "trade-amount-negative": (trade, w(amount=-1.0)),
        "trade-amount-zero": (trade, w(amount=0)),
        "volume-negative": (volume, w(volume24h=-1.0)),
        "batch-bad-entry": (batch, lambda e: {**e, "updates": e["updates"][:2] + [{"tokenId": "B", "price": 0.0}]}),
        "batch-negative-volume": (batch, lambda e: {**e, "updates": [{"tokenId": "B", "price": 1.0, "volume24h": -3.0}]}),
        "batch-empty": (batch, w(updates=[])),
        "market-float-count": (market, w(totalTrades24h=42.0, activeTokens=8)),
        "market-fraction-count": (market, w(totalTrades24h=42.5)),
        "market-negative-volume": (market, w(totalVolume24h=-0.5)),
    }
    for name, (event, change) in variants.items():
        seeds[name] = compact(change(dict(event)))
    p = compact(price)
    seeds.update({
        "header-msg-id": f"odin.token.BTC.price {price['nonce']}\n{p}",
        "header-other-msg-id": f"odin.token.BTC.price other-id\n{p}",
        "header-empty-msg-id": f"odin.token.BTC.price \n{p}",
        "header-long-msg-id": f"odin.token.BTC.price {'m' * 129}\n{p}",
        "subject-mismatch-token": f"odin.token.ETH.price\n{p}",
        "subject-mismatch-type": f"odin.token.BTC.volume\n{p}",
        "subject-unknown": f"odin.token.*.price\n{p}",
        "subject-batch": f"odin.token.batch.update\n{compact(batch)}",
        "subject-market": f"odin.market.statistics\n{compact(market)}",
        "not-json": "odin.token.BTC.price\nnot json",
        "number-too-large": p.replace(f'"price":{price["price"]}', '"price":1e400'),
        "duplicate-field": p[:-1] + ',"price":2.0}',
        "unknown-type": compact({**price, "type": "price_changed"}),
    })
    seeds = {k: v.encode() for k, v in seeds.items()}
    seeds["not-utf8"] = b"odin.token.BTC.price\n" + compact(price).encode().replace(b"BTC", b"B\xffC", 1)
    return seeds


def jwt_claims():
    h = {"alg": "HS256", "typ": "JWT"}
    good = {"sub": "alice", "exp": FAR}
    strict = {"sub": "alice", "exp": FAR, "aud": "odin-clients", "iss": "odin-issuer"}
    signed = {
        "good": (h, good),
        "good-iat": (h, {**good, "iat": 1764288000}),
        "strict": (h, strict),
        "strict-aud-list": (h, {**strict, "aud": ["x", "odin-clients"]}),
        "strict-wrong-aud": (h, {**strict, "aud": ["x", "y"]}),
        "strict-issuer-number": (h, {**strict, "iss": 5}),
        "aud-number": (h, {**good, "aud": 5}),
        "aud-null-iss-object": (h, {**good, "aud": None, "iss": {"x": 1}}),
        "crit": ({**h, "crit": ["exp-ext"]}, good),
        "crit-empty": ({**h, "crit": []}, good),
        "crit-null": ({**h, "crit": None}, good),
        "crit-string": ({**h, "crit": "exp"}, good),
        "kid": ({**h, "kid": "k1"}, good),
        "alg-none": ({"alg": "none"}, good),
        "alg-hs512": ({"alg": "HS512"}, good),
        "alg-lowercase": ({"alg": "hs256"}, good),
        "alg-missing": ({"typ": "JWT"}, good),
        "alg-number": ({"alg": 256}, good),
        "exp-max": (h, {**good, "exp": MAX_EXP}),
        "exp-max-plus-1": (h, {**good, "exp": MAX_EXP + 1}),
        "exp-u64-max": (h, {**good, "exp": 18446744073709551615}),
        "exp-u64-max-plus-1": (h, {**good, "exp": 18446744073709551616}),
        "exp-huge-float": (h, {**good, "exp": 1e300}),
        "exp-fraction": (h, {**good, "exp": FAR + 0.5}),
        "exp-negative": (h, {**good, "exp": -1}),
        "exp-zero": (h, {**good, "exp": 0}),
        "exp-past": (h, {**good, "exp": 1764288000}),
        "exp-string": (h, {**good, "exp": str(FAR)}),
        "exp-null": (h, {**good, "exp": None}),
        "exp-missing": (h, {"sub": "alice"}),
        "nbf-future": (h, {**good, "nbf": FAR - 1}),
        "nbf-huge": (h, {**good, "nbf": 1e300}),
        "iat-negative": (h, {**good, "iat": -5}),
        "sub-empty": (h, {**good, "sub": ""}),
        "sub-number": (h, {**good, "sub": 5}),
        "sub-missing": (h, {"exp": FAR}),
        "sub-unicode": (h, {**good, "sub": "é\u0000\U0001F600"}),
    }
    seeds = {f"S-{k}": "S" + compact(a) + "\n" + compact(b) for k, (a, b) in signed.items()}
    seeds.update({
        "S-duplicate-sub": 'S{"alg":"HS256"}\n{"sub":"a","sub":"b","exp":%d}' % FAR,
        "S-claims-not-object": 'S{"alg":"HS256"}\n[1,2]',
        "S-claims-not-json": 'S{"alg":"HS256"}\nsub=alice',
        "T-good": "T" + jwt(h, good),
        "T-good-hs512": "T" + jwt({"alg": "HS512"}, good, digest=hashlib.sha512),
        "T-other-secret": "T" + jwt(h, good, secret=b"other"),
        "T-alg-none": "T" + jwt({"alg": "none"}, good).rsplit(".", 1)[0] + ".",
        "T-three-dots": "Ta.b.c",
        "T-empty": "T",
        "T-padding": "T" + jwt(h, good) + "==",
        "T-two-parts": "T" + jwt(h, good).rsplit(".", 1)[0],
        "R-query": "Rtoken=" + jwt(h, good) + "\nBearer x",
        "R-query-empty": "Rtoken=\nBearer " + jwt(h, good),
        "R-bearer": "R\nbearer  " + jwt(h, good) + " ",
        "R-basic": "R\nBasic abc",
        "R-escaped": "Ra=1&token=" + jwt(h, good).replace(".", "%2E") + "\n",
    })
    seeds = {k: v.encode() for k, v in seeds.items()}
    # Structured inputs (the `arbitrary` path): any bytes whose first byte is
    # none of T, S, R.
    seeds["A-zeros"] = b"\x00" * 64
    seeds["A-counting"] = bytes(range(256))
    seeds["A-ones"] = b"\x01" * 128
    seeds["A-high"] = bytes(255 - (i * 7) % 256 for i in range(200))
    return seeds


def deflate_frames():
    """Seeds of the deflate_frames target: a limit byte, a chunk byte, then a
    stream of frames (compressed ones as zlib's raw deflate with a sync flush
    makes them, RFC 7692 §7.2.1), and offers as browsers and libraries send
    them."""
    import zlib

    def deflate(data):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def frame(b0, payload, key=None):
        n = len(payload)
        head = bytes([b0])
        mask = 0x80 if key else 0
        if n < 126:
            head += bytes([mask | n])
        elif n < 65536:
            head += bytes([mask | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([mask | 127]) + n.to_bytes(8, "big")
        if key:
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return head + payload

    sub = b'{"type":"subscribe","channels":["token.BTC","token.ETH"],"id":"s1"}'
    price = b'{"type":"price_update","tokenId":"BTC","price":64012.5,"source":"trade","timestamp":1765000000000.5,"nonce":"n-1"}'
    key = b"\x37\xfa\x21\x3d"
    z = deflate(price)
    return {
        "F-compressed-masked": b"\x05\x07" + frame(0xC1, deflate(sub), key),
        "F-compressed-server": b"\x05\x40" + frame(0xC1, z),
        "F-fragmented-ping": b"\x05\x03" + frame(0x41, z[:5], key) + frame(0x89, b"p", key) + frame(0x80, z[5:], key),
        "F-plain-then-compressed": b"\x04\x10" + frame(0x81, sub, key) + frame(0xC1, z, key),
        "F-bomb": b"\x00\xff" + frame(0xC1, deflate(b" " * 65536), key),
        "F-rsv1-on-ping": b"\x05\x01" + frame(0xC9, b"", key),
        "O-chromium": b"permessage-deflate; client_max_window_bits",
        "O-python": b"permessage-deflate; server_max_window_bits=15; client_max_window_bits",
        "O-quoted": b'x-foo, permessage-deflate; client_max_window_bits="10"',
        "O-small-window": b"permessage-deflate; server_max_window_bits=9, permessage-deflate",
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in sorted(seeds.items()):
        assert len(name) < 40, name  # 40-character names are the grown corpus's
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds, {sum(len(v if isinstance(v, bytes) else v.encode()) for v in seeds.values())} bytes")


if __name__ == "__main__":
    write("client_message", client_message())
    write("channel_grammar", channel_grammar())
    write("nats_event", nats_event())
    write("jwt_claims", jwt_claims())
    write("deflate_frames", deflate_frames())
