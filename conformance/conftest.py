"""Fixtures: a real nats-server and real odin-server processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from odinlib import NatsServer, OdinServer, ODIN_BIN, wait_until


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="odin-conformance-")
    yield d
    if os.environ.get("ODIN_CONFORMANCE_KEEP_LOGS") != "1":
        shutil.rmtree(d, ignore_errors=True)
    else:
        print(f"\nlogs kept in {d}")


@pytest.fixture(scope="session")
def odin_bin():
    # The binary may still be being built by someone else: wait for it (bounded).
    wait_until(lambda: os.access(ODIN_BIN, os.X_OK), 120, interval=1.0, what=f"{ODIN_BIN} to exist")
    return ODIN_BIN


@pytest.fixture(scope="session")
def nats_factory(workdir):
    started = []

    def make() -> NatsServer:
        n = NatsServer(workdir).start()
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()


@pytest.fixture(scope="session")
def nats_server(nats_factory):
    return nats_factory()


@pytest.fixture(scope="session")
def odin_factory(workdir, odin_bin, nats_server):
    """Start an extra gateway: odin_factory(args=[...], env={...}, nats_url=..., wait=True)."""
    started = []

    def make(args=None, env=None, nats_url=None, name="odin", wait=True, use_flags=True, secret=None,
             tls=None, cafile=None) -> OdinServer:
        s = OdinServer(workdir, nats_url or nats_server.url, secret=secret, args=args, env=env, name=name,
                       use_flags=use_flags, tls=tls, cafile=cafile)
        started.append(s)
        s.start(wait=wait)
        return s

    yield make
    for s in started:
        s.terminate()


@pytest.fixture(scope="session")
def odin(odin_factory):
    """The main gateway: defaults everywhere except addresses, secret and server id."""
    return odin_factory(args=["--server-id", "conformance-main"], name="main")
