"""PROTOCOL.md section 2 (version 2): public keys from a JWKS document, picked by kid,
each pinned to its alg, beside the secret, and rotated without a restart.

Tokens are signed with the test-only private keys in fixtures/keys/ by the server
binary's own `token` command (Python's PyJWT would need the cryptography package)."""

import os
import shutil
import subprocess

import pytest

from odinlib import ODIN_BIN, raw_upgrade, wait_until

KEYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "keys")


def signed(alg, key, kid=None, sub="conformance"):
    cmd = [ODIN_BIN, "token", "--jwt-algorithm", alg, "--jwt-private-key", os.path.join(KEYS, key),
           "--sub", sub, "--ttl", "10m"]
    if kid:
        cmd += ["--kid", kid]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODIN_")}
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip().splitlines()[-1]


def status(odin, token):
    r = raw_upgrade(odin.host, odin.ws_port, f"/ws?token={token}")
    return r.status, (r.json() or {}).get("code") if r.status != 101 else None


@pytest.fixture(scope="module")
def jwks_file(workdir):
    path = os.path.join(workdir, "jwks-conformance.json")
    shutil.copy(os.path.join(KEYS, "jwks-a.json"), path)
    return path


@pytest.fixture(scope="module")
def odin_jwks(odin_factory, jwks_file):
    return odin_factory(args=["--jwks-file", jwks_file, "--jwks-refresh", "300ms"], name="jwks")


def test_jwks_keys_are_picked_by_kid_and_pinned_to_their_alg(odin_jwks):
    assert status(odin_jwks, signed("RS256", "rs256-a.key.pem", kid="a"))[0] == 101
    assert status(odin_jwks, signed("EdDSA", "ed25519-c.key.pem", kid="c"))[0] == 101
    # Without kid: the one key pinned to the token's algorithm.
    assert status(odin_jwks, signed("RS256", "rs256-a.key.pem"))[0] == 101
    # kid a is an RS256 key: an EdDSA token naming it is refused.
    assert status(odin_jwks, signed("EdDSA", "ed25519-c.key.pem", kid="a")) == (401, "auth_invalid")
    # The secret still works beside the keys.
    assert status(odin_jwks, odin_jwks.token())[0] == 101


def test_jwks_rotation_without_restart(odin_jwks, jwks_file):
    b = signed("ES256", "es256-b.key.pem", kid="b")
    assert status(odin_jwks, b) == (401, "auth_invalid")
    tmp = jwks_file + ".new"
    shutil.copy(os.path.join(KEYS, "jwks-b.json"), tmp)
    os.replace(tmp, jwks_file)
    wait_until(lambda: status(odin_jwks, b)[0] == 101, 10, what="the new key accepted")
    assert status(odin_jwks, signed("RS256", "rs256-a.key.pem", kid="a")) == (401, "auth_invalid")
