"""Section 5: 'No bad input may crash the server' - checked after everything else ran."""

from odinlib import Client, run, wait_until


def test_main_server_survived_everything(odin):
    assert odin.proc.poll() is None, f"odin-server exited:\n{odin.log_tail()}"
    assert odin.health().status == 200
    # every connection of the suite has been closed: none is left behind (no leaked task)
    wait_until(lambda: odin.stats()["connectionCount"] == 0, 5, what="connectionCount back to 0")

    async def t():
        async with await Client.connect(odin.ws_url(odin.token())) as c:
            await c.barrier()

    run(t())
