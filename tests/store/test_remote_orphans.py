"""An aiohttp task orphaned by a connection closed under a request prints no traceback (found
by the remote money soak: the cable pulled 0.83 s into two builds, and one of them printed
"Task exception was never retrieved" with aiohttp's traceback, exit 0)."""

from __future__ import annotations

import asyncio
import gc
import logging

import aiohttp
import pytest

from nbpipe.store.remote import quiet_orphans


async def _orphan(error: BaseException) -> None:
    async def fails() -> None:
        raise error

    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0)  # it ran and failed; nobody awaits it
    await asyncio.sleep(0)
    del task


def _said(caplog, error: BaseException, quiet: bool) -> list[str]:
    loop = asyncio.new_event_loop()
    try:
        if quiet:
            quiet_orphans(loop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.run_until_complete(_orphan(error))
            gc.collect()  # the task is collected: asyncio says its exception then
    finally:
        loop.close()
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"]


def test_an_aiohttp_task_orphaned_by_a_closed_connection_is_not_printed(caplog):
    error = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    assert any("never retrieved" in m for m in _said(caplog, error, quiet=False))
    caplog.clear()
    assert _said(caplog, error, quiet=True) == []


@pytest.mark.parametrize("error", [ValueError("a bug of ours"), KeyError("x")])
def test_other_orphaned_errors_still_reach_the_loops_handler(caplog, error):
    assert any("never retrieved" in m for m in _said(caplog, error, quiet=True))
