"""Helpers for the Odin conformance suite.

Everything here is written from PROTOCOL.md alone: process management for
nats-server and odin-server, JWT minting, NATS publishing, a WebSocket client
wrapper (the `websockets` library) and a tiny raw WebSocket client for the
cases a well-behaved library will not produce (ignored pings, announced
oversized frames, a reader that stops reading).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

import jwt as pyjwt
import nats
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

NATS_BIN = os.environ.get("NATS_SERVER_BIN", "nats-server")
# Without ODIN_SERVER_BIN: this checkout's debug build (`make build`).
ODIN_BIN = os.environ.get(
    "ODIN_SERVER_BIN",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug", "odin-server"),
)

RECV_TIMEOUT = 3.0  # bounded wait for one expected frame
ABSENCE_GRACE = 0.3  # extra bounded wait after a marker, for "nothing else came"

TOKEN_ID_OK = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


# --------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12]


def now_ms() -> float:
    return time.time() * 1000.0


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `pred` until it returns a truthy value (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


async def await_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


def wait_tcp(host: str, port: int, timeout: float) -> None:
    def ok():
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_until(ok, timeout, what=f"TCP {host}:{port}")


def run(coro, timeout: float = 30.0):
    """Run one test coroutine with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --------------------------------------------------------------------------
# HTTP


@dataclass
class HttpResponse:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def tls_context(cafile: str) -> ssl.SSLContext:
    """A client TLS context trusting only the certificates (a CA or a self-signed server
    certificate) in the PEM file `cafile`."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def http_get(base: str, path: str, timeout: float = 3.0, context: ssl.SSLContext | None = None) -> HttpResponse:
    req = urllib.request.Request(base + path, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return HttpResponse(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def raw_upgrade(host: str, port: int, path: str, headers: dict | None = None, timeout: float = 3.0) -> HttpResponse:
    """Send a WebSocket upgrade request by hand and return the HTTP answer.

    Used for the refusals (401/404/503), where we need the exact status and body.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    req = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        hl = head.decode("latin-1").split("\r\n")
        status = int(hl[0].split()[1])
        hdrs = {}
        for line in hl[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if status == 101:
            return HttpResponse(status, hdrs, b"")
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(rest) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            body = rest[:n]
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            data = rest
            body = b""
            while True:
                while b"\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(data) < size + 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if size == 0:
                    break
                body += data[:size]
                data = data[size + 2:]
        else:
            s.settimeout(1.0)
            body = rest
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except socket.timeout:
                pass
        return HttpResponse(status, hdrs, body)


# --------------------------------------------------------------------------
# JWT


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(secret: str, sub: str | None = "conformance", ttl: float | None = 3600, alg: str = "HS256",
         exp: int | None = None, **claims) -> str:
    payload = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if exp is not None:
        payload["exp"] = exp
    elif ttl is not None:
        payload["exp"] = int(time.time() + ttl)
    return pyjwt.encode(payload, secret, algorithm=alg)


def mint_raw(header: dict, payload: dict, secret: str | None, hash_alg=hashlib.sha256) -> str:
    """Hand-made token: any header, signed with HMAC (or unsigned when secret is None)."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{h}.{p}".encode()
    if secret is None:
        sig = ""
    else:
        sig = b64url(hmac.new(secret.encode(), signing_input, hash_alg).digest())
    return f"{h}.{p}.{sig}"


# --------------------------------------------------------------------------
# processes


def _die_with_parent():
    """Children get SIGTERM if the test run itself is killed (e.g. by run.sh's timeout)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: best effort
        pass


class NatsServer:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.port = free_port()
        self.mport = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(workdir, f"nats-{self.port}.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [NATS_BIN, "-p", str(self.port), "-a", "127.0.0.1", "-m", str(self.mport)],
            stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        logf.close()
        wait_tcp("127.0.0.1", self.port, 15)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def subscriptions(self) -> set:
        """All subscription subjects NATS holds (from its monitoring endpoint)."""
        r = http_get(f"http://127.0.0.1:{self.mport}", "/connz?subs=1")
        subs = set()
        for c in r.json().get("connections", []):
            for s in c.get("subscriptions_list", []) or []:
                subs.add(s)
        return subs


# `ODIN_CONFORMANCE_COMPRESSION=1` (`make conformance-compressed`): every gateway the
# suite starts runs with `--compression`, and every `Client` offers permessage-deflate
# (PROTOCOL.md §2), so the whole suite runs over compressed connections.
COMPRESSION = os.environ.get("ODIN_CONFORMANCE_COMPRESSION") == "1"


class OdinServer:
    def __init__(self, workdir: str, nats_url: str, secret: str | None = None, args: list | None = None,
                 env: dict | None = None, name: str = "odin", use_flags: bool = True,
                 tls: tuple[str, str] | None = None, cafile: str | None = None):
        """`tls`: (certificate chain, key) PEM files to serve wss:// and https:// with; `cafile`:
        what clients trust for it (defaults to the certificate itself, for a self-signed one)."""
        self.workdir = workdir
        self.tls = tls
        self.context = tls_context(cafile or tls[0]) if tls else None
        self.nats_url = nats_url
        self.secret = secret if secret is not None else "conformance-secret-" + uuid.uuid4().hex
        self.args = list(args or [])
        if COMPRESSION and "--compression" not in self.args:
            self.args.append("--compression")
        self.extra_env = dict(env or {})
        self.name = name
        self.use_flags = use_flags
        self.ws_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(workdir, f"{name}-{self.ws_port}.log")
        self.exit_code: int | None = None

    # addresses
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def ws_base(self) -> str:
        if self.tls:
            return f"wss://localhost:{self.ws_port}"
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def http_base(self) -> str:
        if self.tls:
            return f"https://localhost:{self.http_port}"
        return f"http://127.0.0.1:{self.http_port}"

    def ws_url(self, token: str | None = None, path: str = "/ws") -> str:
        if token is None:
            return self.ws_base + path
        return f"{self.ws_base}{path}?token={token}"

    def token(self, **kw) -> str:
        kw.setdefault("alg", self._alg())
        return mint(self.secret, **kw)

    def _alg(self) -> str:
        if "--jwt-algorithm" in self.args:
            return self.args[self.args.index("--jwt-algorithm") + 1]
        return "HS256"

    def command(self) -> tuple[list, dict]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODIN_")}
        env.setdefault("RUST_LOG", "info")
        cmd = [ODIN_BIN]
        if self.use_flags:
            cmd += [
                "--ws-addr", f"127.0.0.1:{self.ws_port}",
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--nats-url", self.nats_url,
                "--jwt-secret", self.secret,
            ]
        else:
            env.update({
                "ODIN_WS_ADDR": f"127.0.0.1:{self.ws_port}",
                "ODIN_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
                "ODIN_NATS_URL": self.nats_url,
                "ODIN_JWT_SECRET": self.secret,
            })
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        cmd += self.args
        env.update(self.extra_env)
        return cmd, env

    def start(self, wait: bool = True):
        cmd, env = self.command()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 30.0):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"odin-server exited {self.proc.returncode}:\n{self.log_tail()}")
            r = http_get(self.http_base, "/health", timeout=1.0, context=self.context)
            return r.status == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.05)
        raise RuntimeError(f"odin-server not ready after {timeout}s:\n{self.log_tail()}")

    def stats(self) -> dict:
        r = http_get(self.http_base, "/stats", context=self.context)
        assert r.status == 200, r
        return r.json()

    def health(self) -> HttpResponse:
        return http_get(self.http_base, "/health", context=self.context)

    def terminate(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.exit_code = self.proc.returncode
        return self.exit_code


# --------------------------------------------------------------------------
# NATS publishing


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Publisher:
    """Publishes events to NATS exactly as PROTOCOL.md section 1 describes."""

    def __init__(self, url: str, prefix: str = "odin"):
        self.url = url
        self.prefix = prefix
        self.nc = None

    async def __aenter__(self):
        self.nc = await nats.connect(self.url, connect_timeout=3, max_reconnect_attempts=0)
        return self

    async def __aexit__(self, *exc):
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001
            pass

    # subjects (section 1)
    def subj_price(self, tok):
        return f"{self.prefix}.token.{tok}.price"

    def subj_volume(self, tok):
        return f"{self.prefix}.token.{tok}.volume"

    def subj_trade(self, tok):
        return f"{self.prefix}.trades.{tok}"

    def subj_batch(self):
        return f"{self.prefix}.token.batch.update"

    def subj_market(self):
        return f"{self.prefix}.market.statistics"

    async def raw(self, subject: str, payload: bytes, header_nonce: str | None = None, headers: dict | None = None,
                  flush: bool = True):
        hdrs = dict(headers or {})
        if header_nonce is not None:
            hdrs["Nats-Msg-Id"] = header_nonce
        await self.nc.publish(subject, payload, headers=hdrs or None)
        if flush:
            await self.nc.flush()

    async def event(self, subject: str, ev: dict, header: bool = True, flush: bool = True) -> bytes:
        data = dumps(ev)
        await self.raw(subject, data, header_nonce=ev.get("nonce") if header else None, flush=flush)
        return data

    async def price(self, tok, price=1.0, flush=True, **kw) -> tuple[dict, bytes]:
        ev = price_event(tok, price, **kw)
        return ev, await self.event(self.subj_price(tok), ev, flush=flush)

    async def volume(self, tok, vol=10.0, **kw):
        ev = volume_event(tok, vol, **kw)
        return ev, await self.event(self.subj_volume(tok), ev)

    async def trade(self, tok, flush=True, **kw):
        ev = trade_event(tok, **kw)
        return ev, await self.event(self.subj_trade(tok), ev, flush=flush)

    async def batch(self, updates, **kw):
        ev = batch_event(updates, **kw)
        return ev, await self.event(self.subj_batch(), ev)

    async def market(self, **kw):
        ev = market_event(**kw)
        return ev, await self.event(self.subj_market(), ev)


def _base(type_, nonce=None, ts=None):
    return {"type": type_, "timestamp": now_ms() if ts is None else ts, "nonce": uid("n-") if nonce is None else nonce}


def price_event(tok, price=1.0, nonce=None, ts=None, source="trade", **extra):
    ev = _base("price_update", nonce, ts)
    ev.update({"tokenId": tok, "price": price, "source": source})
    ev.update(extra)
    return ev


def volume_event(tok, vol=10.0, nonce=None, ts=None, **extra):
    ev = _base("volume_update", nonce, ts)
    ev.update({"tokenId": tok, "volume24h": vol})
    ev.update(extra)
    return ev


def trade_event(tok, price=1.0, amount=2.0, side="buy", nonce=None, ts=None, trade_id=None, **extra):
    ev = _base("trade_executed", nonce, ts)
    ev.update({"tokenId": tok, "tradeId": trade_id or uid("t-"), "side": side, "price": price, "amount": amount})
    ev.update(extra)
    return ev


def batch_event(updates, nonce=None, ts=None, **extra):
    ev = _base("batch_update", nonce, ts)
    ev.update({"source": "scheduler", "updates": updates})
    ev.update(extra)
    return ev


def market_event(total_volume=1000.5, total_trades=42, active=7, nonce=None, ts=None, **extra):
    ev = _base("market_stats", nonce, ts)
    ev.update({"totalVolume24h": total_volume, "totalTrades24h": total_trades, "activeTokens": active})
    ev.update(extra)
    return ev


# --------------------------------------------------------------------------
# WebSocket client (library)


def check_envelope(msg: dict):
    """Section 3: every server-to-client message has type, timestamp (ms), nonce (1-128)."""
    assert isinstance(msg, dict), msg
    assert isinstance(msg.get("type"), str), f"no string type: {msg}"
    ts = msg.get("timestamp")
    assert isinstance(ts, (int, float)) and not isinstance(ts, bool), f"timestamp not a number: {msg}"
    n = msg.get("nonce")
    assert isinstance(n, str) and 1 <= len(n) <= 128, f"nonce not a 1-128 char string: {msg}"


class Closed(Exception):
    def __init__(self, code, reason, exc=None):
        super().__init__(f"closed code={code} reason={reason!r}")
        self.code = code
        self.reason = reason
        self.exc = exc


class Client:
    """A client on top of `websockets`; every received frame is checked to be a
    text frame holding one JSON object with the section 3 envelope."""

    def __init__(self, ws):
        self.ws = ws
        self.greeting: dict | None = None
        self.log: list = []  # (raw text, parsed) of everything received
        self.heartbeats: list = []

    @classmethod
    async def connect(cls, url: str, headers: dict | None = None, greet: bool = True, **kw) -> "Client":
        kw.setdefault("open_timeout", 5)
        kw.setdefault("ping_interval", None)
        kw.setdefault("compression", "deflate" if COMPRESSION else None)
        kw.setdefault("max_size", 16 * 1024 * 1024)
        kw.setdefault("max_queue", None)
        ws = await ws_connect(url, additional_headers=headers, **kw)
        c = cls(ws)
        if greet:
            c.greeting = await c.recv()
            assert c.greeting["type"] == "connection_established", c.greeting
        return c

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:  # noqa: BLE001
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def send(self, obj):
        if isinstance(obj, (str, bytes)):
            await self.ws.send(obj)
        else:
            await self.ws.send(json.dumps(obj))

    async def recv_raw(self, timeout: float = RECV_TIMEOUT, skip_heartbeats: bool = True) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            try:
                data = await asyncio.wait_for(self.ws.recv(), left)
            except ConnectionClosed as e:
                raise Closed(e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None, e) from None
            assert isinstance(data, str), f"server sent a binary frame: {data!r}"
            msg = json.loads(data)
            check_envelope(msg)
            self.log.append((data, msg))
            if skip_heartbeats and msg["type"] == "heartbeat":
                self.heartbeats.append(msg)
                continue
            return data, msg

    async def recv(self, timeout: float = RECV_TIMEOUT, skip_heartbeats: bool = True) -> dict:
        return (await self.recv_raw(timeout, skip_heartbeats))[1]

    async def expect(self, type_: str, timeout: float = RECV_TIMEOUT) -> dict:
        m = await self.recv(timeout)
        assert m["type"] == type_, f"expected {type_}, got {m}"
        return m

    async def expect_close(self, timeout: float = RECV_TIMEOUT) -> tuple[int | None, str | None, list]:
        """Read until the connection closes; return (code, reason, messages seen before)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection not closed within {timeout}s; saw {seen}")
            try:
                m = await self.recv(left)
                seen.append(m)
            except Closed as c:
                return c.code, c.reason, seen
            except asyncio.TimeoutError:
                raise AssertionError(f"connection not closed within {timeout}s; saw {seen}") from None

    async def subscribe(self, channels, id_: str | None = None, expect_ok: bool = True) -> dict | None:
        req = {"type": "subscribe", "channels": channels}
        if id_ is not None:
            req["id"] = id_
        await self.send(req)
        if expect_ok:
            m = await self.expect("subscribed")
            return m
        return None

    async def unsubscribe(self, channels, id_: str | None = None) -> dict:
        req = {"type": "unsubscribe", "channels": channels}
        if id_ is not None:
            req["id"] = id_
        await self.send(req)
        return await self.expect("unsubscribed")

    async def barrier(self, timeout: float = RECV_TIMEOUT) -> list:
        """Send a ping with a fresh id; return every message received before its pong."""
        pid = uid("barrier-")
        await self.send({"type": "ping", "id": pid})
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            m = await self.recv(max(0.01, deadline - time.monotonic()))
            if m["type"] == "pong" and m.get("id") == pid:
                return seen
            seen.append(m)

    async def until(self, pred, timeout: float = RECV_TIMEOUT) -> tuple[list, tuple[str, dict]]:
        """Collect messages until one satisfies pred(raw, msg); return (before, match)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; saw {[m for _, m in seen]}")
            try:
                raw, m = await self.recv_raw(left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no matching message within {timeout}s; saw {[m for _, m in seen]}") from None
            if pred(raw, m):
                return seen, (raw, m)
            seen.append((raw, m))

    async def until_nonce(self, nonce: str, timeout: float = RECV_TIMEOUT):
        return await self.until(lambda r, m: m.get("nonce") == nonce, timeout)

    async def drain_quiet(self, grace: float = ABSENCE_GRACE) -> list:
        """Collect whatever arrives within a short bounded grace (used after a marker)."""
        seen = []
        while True:
            try:
                seen.append(await self.recv_raw(grace))
            except asyncio.TimeoutError:
                return seen


async def connect_refused(url: str, headers: dict | None = None) -> InvalidStatus:
    try:
        ws = await ws_connect(url, additional_headers=headers, open_timeout=5, compression=None)
    except InvalidStatus as e:
        return e
    await ws.close()
    raise AssertionError("connection was accepted")


# --------------------------------------------------------------------------
# raw WebSocket client


class RawWS:
    """Minimal RFC 6455 client over asyncio streams, for misbehaving-client tests."""

    def __init__(self, reader, writer, sock):
        self.reader = reader
        self.writer = writer
        self.sock = sock

    @classmethod
    async def connect(cls, host: str, port: int, path: str, rcvbuf: int | None = None, stream_limit: int = 65536):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 5)
        reader, writer = await asyncio.open_connection(sock=sock, limit=stream_limit)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(req.encode())
        await writer.drain()
        head = b""
        while b"\r\n\r\n" not in head:
            b = await asyncio.wait_for(reader.read(1), 5)
            if not b:
                raise ConnectionError("EOF during handshake")
            head += b
        status = int(head.split(b"\r\n")[0].split()[1])
        if status != 101:
            raise ConnectionError(f"upgrade refused: {head!r}")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert accept.lower() in head.lower(), head
        return cls(reader, writer, sock)

    async def send_frame(self, opcode: int, payload: bytes, fin: bool = True, declared_len: int | None = None):
        n = len(payload) if declared_len is None else declared_len
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(hdr + mask + masked)
        await self.writer.drain()

    async def send_text(self, s: str):
        await self.send_frame(0x1, s.encode())

    async def read_frame(self, timeout: float = RECV_TIMEOUT) -> tuple[bool, int, bytes]:
        async def _read():
            h = await self.reader.readexactly(2)
            fin = bool(h[0] & 0x80)
            op = h[0] & 0x0F
            n = h[1] & 0x7F
            masked = bool(h[1] & 0x80)
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            mask = await self.reader.readexactly(4) if masked else None
            p = await self.reader.readexactly(n)
            if mask:
                p = bytes(b ^ mask[i % 4] for i, b in enumerate(p))
            return fin, op, p

        return await asyncio.wait_for(_read(), timeout)

    async def read_json(self, timeout: float = RECV_TIMEOUT, answer_pings: bool = True) -> dict:
        """Next text frame as JSON (control frames handled: pings answered if asked)."""
        deadline = time.monotonic() + timeout
        while True:
            fin, op, p = await self.read_frame(max(0.01, deadline - time.monotonic()))
            if op == 0x9:
                if answer_pings:
                    await self.send_frame(0xA, p)
                continue
            if op == 0x8:
                raise Closed(*parse_close(p))
            assert op == 0x1 and fin, f"unexpected frame op={op} fin={fin}"
            m = json.loads(p.decode())
            check_envelope(m)
            return m

    def close(self):
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001
            pass


def parse_close(p: bytes) -> tuple[int | None, str]:
    if len(p) >= 2:
        return struct.unpack("!H", p[:2])[0], p[2:].decode("utf-8", "replace")
    return None, ""
