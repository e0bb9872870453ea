"""PROTOCOL.md section 7 (command line), development mode (section 2), the subject prefix
(section 1), graceful shutdown (guarantee 6) and NATS outages (section 6)."""

import asyncio
import os
import signal
import subprocess
import time

import pytest

from odinlib import (ODIN_BIN, _die_with_parent, Client, OdinServer, Publisher, RawWS, price_event, raw_upgrade, run, uid,
                     wait_until, await_until)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODIN_")}
    env.update(extra)
    return env


def _run_bin(args, env, timeout=10):
    return subprocess.run([ODIN_BIN] + args, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)


def _reason_lines(stderr: bytes):
    return [l for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]


# ---- configuration ----------------------------------------------------------------------


def test_no_secret_outside_dev_exits_nonzero_one_line(odin_bin, nats_server):
    p = _run_bin(["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--nats-url", nats_server.url],
                 _clean_env())
    lines = _reason_lines(p.stderr)
    assert p.returncode != 0
    assert len(lines) == 1, f"expected a one-line reason, got {lines}"
    assert "secret" in lines[0].lower(), lines


@pytest.mark.parametrize("val", ["0", "false", "no", "off"])
def test_odin_dev_false_values_are_not_dev_mode(odin_bin, nats_server, val):
    """ODIN_DEV accepts 1/0, true/false, yes/no, on/off: the false ones do not allow the built-in secret."""
    p = _run_bin(["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--nats-url", nats_server.url],
                 _clean_env(ODIN_DEV=val))
    assert p.returncode != 0
    assert len(_reason_lines(p.stderr)) == 1, p.stderr


@pytest.mark.parametrize("args,env,names", [
    (["--max-connections", "lots"], {}, ["max-connections", "lots"]),
    ([], {"ODIN_HEARTBEAT_INTERVAL_MS": "soon"}, ["heartbeat-interval", "HEARTBEAT_INTERVAL", "soon"]),
    (["--jwt-algorithm", "none"], {}, ["jwt-algorithm", "none"]),
    (["--drain-timeout", "forever"], {}, ["drain-timeout", "forever"]),
], ids=["flag_not_a_number", "env_not_a_number", "alg_none", "bad_duration"])
def test_bad_setting_exits_nonzero_one_line(odin_bin, nats_server, args, env, names):
    """Reading of 'exit non-zero with a one-line reason': the first stderr line alone gives the
    reason (further hint lines are tolerated; see the report)."""
    p = _run_bin(["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--nats-url", nats_server.url,
                  "--jwt-secret", "s"] + args, _clean_env(**env))
    lines = _reason_lines(p.stderr)
    assert p.returncode != 0
    assert lines, "no reason on stderr"
    assert any(n in lines[0] for n in names), f"first line does not name the bad setting: {lines}"
    print(f"stderr lines: {lines}")


def test_settings_from_environment_and_flags_win(odin_factory):
    """Every setting is an env variable too; flags win."""
    s = odin_factory(args=["--server-id", "from-flag"], env={"ODIN_SERVER_ID": "from-env",
                                                              "ODIN_HEARTBEAT_INTERVAL_MS": "1234"},
                     use_flags=False, name="envcfg")

    async def t():
        async with await Client.connect(s.ws_url(s.token())) as c:
            assert c.greeting["serverId"] == "from-flag"
            assert c.greeting["heartbeatIntervalMs"] == 1234

    run(t())
    assert s.stats()["serverId"] == "from-flag"


@pytest.mark.parametrize("val", ["1", "true", "yes", "on"])
def test_dev_mode_starts_without_secret(odin_bin, workdir, nats_server, val):
    """ODIN_DEV accepts 1/true/yes/on; development mode runs with its built-in secret and says so."""
    s = OdinServer(workdir, nats_server.url, args=[], env={"ODIN_DEV": val}, name=f"dev{val}")
    cmd, env = s.command()
    i = cmd.index("--jwt-secret")
    del cmd[i:i + 2]
    logf = open(s.log, "ab")
    s.proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    logf.close()
    try:
        s.wait_ready(20)
        log = open(s.log, "rb").read().decode("utf-8", "replace").lower()
        assert "dev" in log, "development mode must say so loudly"
        # a token minted by the server's own `token --dev` is accepted
        p = _run_bin(["token", "--dev", "--sub", "dev-check"], _clean_env(ODIN_DEV=val))
        assert p.returncode == 0, p.stderr
        tok = p.stdout.decode().strip().splitlines()[-1]
        assert raw_upgrade(s.host, s.ws_port, f"/ws?token={tok}").status == 101
    finally:
        s.terminate()


def test_subject_prefix_setting(odin_factory, nats_server):
    s = odin_factory(args=["--subject-prefix", "acme"], name="prefix")

    async def t():
        tok = uid("PX")
        async with await Client.connect(s.ws_url(s.token())) as c, Publisher(nats_server.url) as odin_pub, \
                Publisher(nats_server.url, prefix="acme") as acme:
            await c.subscribe([f"token.{tok}", "batch", "market"])
            await odin_pub.price(tok, 1.0)  # default prefix: not for this server
            ev, data = await acme.price(tok, 2.0)
            before, (raw, _) = await c.until_nonce(ev["nonce"])
            assert raw == data.decode()
            assert [m for _, m in before if m["type"] != "heartbeat"] == []
            for coro in (acme.volume(tok), acme.trade(tok), acme.batch([{"tokenId": tok, "price": 1}]),
                         acme.market()):
                ev, data = await coro
                _, (raw, _) = await c.until_nonce(ev["nonce"])
                assert raw == data.decode()

    run(t())


def test_logs_go_to_stderr(odin_bin, workdir, nats_server):
    """Section 7: 'Both log to stderr' - nothing on stdout."""
    s = OdinServer(workdir, nats_server.url, name="stderr")
    cmd, env = s.command()
    out_path = s.log + ".stdout"
    with open(out_path, "wb") as out, open(s.log, "ab") as err:
        s.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        s.wait_ready(20)

        async def t():
            async with await Client.connect(s.ws_url(s.token())) as c:
                await c.barrier()

        run(t())
        raw_upgrade(s.host, s.ws_port, "/ws")  # an auth failure, usually logged
    finally:
        assert s.terminate() == 0
    assert open(out_path, "rb").read() == b"", "odin-server wrote to stdout"
    assert open(s.log, "rb").read().strip(), "odin-server logged nothing on stderr"


# ---- graceful shutdown (guarantee 6) -----------------------------------------------------


def test_sigterm_closes_1001_and_exits_0_within_drain(odin_factory):
    s = odin_factory(args=["--drain-timeout", "3s"], name="shutdown")

    async def t():
        a = await Client.connect(s.ws_url(s.token()))
        b = await Client.connect(s.ws_url(s.token()))
        await a.subscribe(["batch"])
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        for c in (a, b):
            code, reason, _ = await c.expect_close(timeout=4)
            assert code == 1001, (code, reason)
        # stops accepting
        with pytest.raises(Exception):
            await Client.connect(s.ws_url(s.token()))
        while s.proc.poll() is None and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        assert s.proc.poll() == 0, f"exit code {s.proc.poll()}"
        assert time.monotonic() - t0 <= 3.5, "did not exit within the drain time"

    run(t())


def test_sigterm_exits_within_drain_despite_unresponsive_client(odin_factory):
    """A client that never answers the close handshake does not hold the exit past the drain time."""
    s = odin_factory(args=["--drain-timeout", "2s"], name="shutdown2")

    async def t():
        r = await RawWS.connect(s.host, s.ws_port, f"/ws?token={s.token()}", rcvbuf=4096, stream_limit=1024)
        try:
            assert (await r.read_json())["type"] == "connection_established"
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            await await_until(lambda: s.proc.poll() is not None, 4, what="exit")
            assert s.proc.returncode == 0
            assert time.monotonic() - t0 <= 2.5, f"exit after {time.monotonic() - t0:.2f}s, drain is 2 s"
            fin, op, p = await r.read_frame(2)
            assert op == 0x8 and int.from_bytes(p[:2], "big") == 1001, (op, p)
        finally:
            r.close()

    run(t())


def test_sigint_also_graceful(odin_factory):
    s = odin_factory(args=["--drain-timeout", "2s"], name="sigint")

    async def t():
        a = await Client.connect(s.ws_url(s.token()))
        s.proc.send_signal(signal.SIGINT)
        code, reason, _ = await a.expect_close(timeout=3)
        assert code == 1001, (code, reason)
        await await_until(lambda: s.proc.poll() is not None, 3, what="exit")
        assert s.proc.returncode == 0

    run(t())


# ---- NATS outage (section 6) ---------------------------------------------------------------


def test_nats_outage_health_degraded_snapshot_and_resume(odin_factory, nats_factory):
    nats = nats_factory()
    s = odin_factory(nats_url=nats.url, name="outage")

    async def t():
        tok = uid("NO")
        obs = await Client.connect(s.ws_url(s.token()))
        await obs.subscribe([f"token.{tok}"])
        async with Publisher(nats.url) as pub:
            ev, data = await pub.price(tok, 1.0)
        await obs.until_nonce(ev["nonce"])

        nats.stop()
        await await_until(lambda: s.health().status == 503, 10, what="/health 503")
        h = s.health().json()
        assert h["status"] == "degraded" and h["nats"] == "disconnected", h
        assert s.stats()["natsConnected"] is False

        # clients stay connected and get the snapshot
        await obs.barrier()
        async with await Client.connect(s.ws_url(s.token())) as late:
            await late.subscribe([f"token.{tok}"])
            raw, _ = await late.recv_raw()
            assert raw == data.decode()

        # live events resume when NATS returns
        nats.start()
        await await_until(lambda: s.health().status == 200, 15, what="/health 200 again")
        assert s.health().json()["status"] == "ok"
        async with Publisher(nats.url) as pub:
            ev2, data2 = await pub.price(tok, 2.0)
        _, (raw, _) = await obs.until_nonce(ev2["nonce"], timeout=5)
        assert raw == data2.decode()
        await obs.close()

    run(t(), timeout=60)
