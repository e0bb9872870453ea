"""Before/after check of issue 19's far-future token: start odin-server --dev,
mint a token with `odin-server token --ttl 292277026596y`, upgrade with it,
print the answer and the panics logged. Usage:
  python3 exp_probe.py SERVER_BIN NATS_URL"""
import socket, subprocess, sys, time
bin_, nats = sys.argv[1], sys.argv[2]
env = {"ODIN_DEV": "1", "RUST_LOG": "error", "PATH": "/usr/bin:/bin"}
p = subprocess.Popen([bin_, "--ws-addr", "127.0.0.1:18081", "--http-addr", "127.0.0.1:13002", "--nats-url", nats],
                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
tok = subprocess.run([bin_, "token", "--dev", "--sub", "far", "--ttl", "292277026596y"], env=env, capture_output=True, text=True)
time.sleep(1.0)
s = socket.create_connection(("127.0.0.1", 18081), timeout=3)
s.sendall((f"GET /ws?token={tok.stdout.strip()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
try:
    print("answer:", s.recv(100).split(b"\r\n")[0].decode() or "(closed, no answer)")
except socket.timeout:
    print("answer: none within 3 s")
p.terminate(); err = p.communicate(timeout=10)[1].decode()
print("panics logged:", err.count("panicked"), "| token minted:", tok.returncode == 0)
