"""PROTOCOL.md section 2 (TLS) and 2.1 (certificate reloads): a gateway started with a certificate
speaks wss:// and https:// only, and serves a new certificate to new connections after SIGHUP while
an established connection keeps receiving."""

import os
import shutil
import signal
import ssl
import subprocess

import pytest

from odinlib import Client, Publisher, await_until, run, tls_context, uid, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def self_signed(workdir: str, name: str) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1 (what the client trusts, too)."""
    cert, key = os.path.join(workdir, f"{name}.crt"), os.path.join(workdir, f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "1", "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


def presented(port: int, cafile: str) -> bytes:
    """The DER certificate a new TLS connection to `port` is shown."""
    import socket
    ctx = tls_context(cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def der(pem_file: str) -> bytes:
    with open(pem_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_wss_delivers_and_a_sighup_reload_keeps_connections(odin_factory, workdir, nats_server):
    first = self_signed(workdir, "first")
    cert, key = os.path.join(workdir, "served.crt"), os.path.join(workdir, "served.key")
    shutil.copy(first[0], cert)
    shutil.copy(first[1], key)
    # Clients trust both certificates: the one served at start and the one after the reload.
    second = self_signed(workdir, "second")
    trust = os.path.join(workdir, "trust.pem")
    with open(trust, "w") as out:
        for c in (first[0], second[0]):
            with open(c) as f:
                out.write(f.read())
    gw = odin_factory(name="tls", tls=(cert, key), cafile=trust)
    assert gw.ws_base.startswith("wss://") and gw.health().status == 200
    assert presented(gw.ws_port, trust) == der(first[0])
    wait_until(lambda: any(s.startswith("odin.") for s in nats_server.subscriptions()), 10,
               what="the gateway's NATS subscription")

    async def scenario():
        async with Publisher(nats_server.url) as pub:
            c = await Client.connect(gw.ws_url(gw.token()), ssl=gw.context)
            tok = uid("T")
            await c.subscribe([f"token.{tok}"])
            ev, _ = await pub.price(tok, 1.0)
            await c.until_nonce(ev["nonce"])

            shutil.copy(second[1], key)
            shutil.copy(second[0], cert)
            gw.proc.send_signal(signal.SIGHUP)
            await await_until(lambda: presented(gw.ws_port, trust) == der(second[0]), 10,
                              what="the new certificate served")
            assert presented(gw.http_port, trust) == der(second[0])
            ev, _ = await pub.price(tok, 2.0)
            await c.until_nonce(ev["nonce"])
            await c.close()

    run(scenario())
    assert gw.stats()["tlsReloads"] >= 1


def test_plain_websocket_on_the_tls_port_is_refused(odin_factory, workdir):
    cert, key = self_signed(workdir, "plain-refused")
    gw = odin_factory(name="tls-plain", tls=(cert, key))

    async def plain():
        with pytest.raises(Exception):
            await Client.connect(f"ws://127.0.0.1:{gw.ws_port}/ws?token={gw.token()}", open_timeout=3)

    run(plain())
    wait_until(lambda: gw.stats()["tlsHandshakeFailures"] >= 1, 5, what="the failed handshake counted")
