"""Before/after check of issue 19's second and third findings, on the real
binary with its default settings:

1. One address's connect flood: 2,000 WebSocket upgrades with valid tokens
   from 127.0.0.2, as fast as one client can, held open; then a client
   from 127.0.0.3 connects. How many of the flood got in, how were the rest
   answered, and is the other address served?
2. Bad-secret flood: 3,000 upgrades with forged tokens from 127.0.0.4.
   How were they answered, and how fast?
3. Token-id flood: 600,000 price events on NATS, each for a new token id,
   with the server's RSS after every 200,000.

Usage: python3 fairness_tokens.py SERVER_BIN NATS_URL
(nats-py and PyJWT, as in conformance/requirements.txt)"""
import asyncio, collections, json, os, socket, subprocess, sys, time

import jwt
import nats

server_bin, nats_url = sys.argv[1], sys.argv[2]
ws, http = 18090, 13011
secret = "probe-secret-0123456789abcdef0123456789"
env = {"ODIN_JWT_SECRET": secret, "RUST_LOG": "warn", "PATH": "/usr/bin:/bin"}
proc = subprocess.Popen([server_bin, "--ws-addr", f"127.0.0.1:{ws}", "--http-addr",
                         f"127.0.0.1:{http}", "--nats-url", nats_url],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def token(key=secret, sub="probe"):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, key, algorithm="HS256")


def upgrade(source, tok):
    """The status line of an upgrade from `source`, and the open socket
    when it was accepted."""
    s = socket.socket()
    s.settimeout(3)
    s.bind((source, 0))
    try:
        s.connect(("127.0.0.1", ws))
        s.sendall(f"GET /ws?token={tok} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = s.recv(400).decode(errors="replace")
    except OSError as e:
        s.close()
        return f"no answer ({e.__class__.__name__})", None
    status = answer.split("\r\n")[0]
    code = ""
    if '"code":"' in answer:
        code = " " + answer.split('"code":"')[1].split('"')[0]
    if status.startswith("HTTP/1.1 101"):
        return status, s
    s.close()
    return status + code, None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def stats():
    s = socket.create_connection(("127.0.0.1", http), timeout=3)
    s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


for _ in range(200):
    try:
        stats()
        break
    except OSError:
        time.sleep(0.05)

print(f"server: {server_bin}")
# 1. One address's connect flood.
held, answers = [], collections.Counter()
t0 = time.monotonic()
for _ in range(2000):
    status, sock = upgrade("127.0.0.2", token())
    answers[status] += 1
    if sock:
        held.append(sock)
took = time.monotonic() - t0
other, sock = upgrade("127.0.0.3", token())
print(f"connect flood, 2,000 from 127.0.0.2 in {took:.1f} s: {len(held)} held; "
      f"answers {dict(answers)}; another address: {other}")
for s in held:
    s.close()
if sock:
    sock.close()

# 2. Bad-secret flood.
forged = token(key="not-the-servers-secret-0123456789abcdef")
answers = collections.Counter()
t0 = time.monotonic()
for _ in range(3000):
    answers[upgrade("127.0.0.4", forged)[0]] += 1
took = time.monotonic() - t0
print(f"forged-token flood, 3,000 from 127.0.0.4 in {took:.1f} s: answers {dict(answers)}")


# 3. Token-id flood.
async def token_flood():
    nc = await nats.connect(nats_url)
    now = time.time() * 1000
    for n in range(600_000):
        event = {"type": "price_update", "tokenId": f"F{n}", "price": 1.5, "source": "trade",
                 "timestamp": now, "nonce": f"flood-{n}"}
        await nc.publish(f"odin.token.F{n}.price", json.dumps(event).encode())
        if (n + 1) % 200_000 == 0:
            await nc.flush()
            target = n + 1
            for _ in range(600):
                if stats()["messagesReceived"] >= target:
                    break
                await asyncio.sleep(0.1)
            now = time.time() * 1000
            s = stats()
            print(f"token flood: {n + 1:,} ids published, {s['messagesReceived']:,} received, "
                  f"RSS {rss_mib(proc.pid):.0f} MiB, tokensHeld {s.get('tokensHeld', 'n/a')}, "
                  f"tokensEvicted {s.get('tokensEvicted', 'n/a')}, tokensRefused {s.get('tokensRefused', 'n/a')}")
    await nc.close()

asyncio.run(token_flood())
proc.terminate()
proc.wait()
