"""The claim protocol against moto's S3 server (store/claims.py, engine/claiming.py): a claim is
written create-only, renewed by compare-and-swap on its ETag, taken over once its lease lapses
unrenewed, removed only by the holder of its ETag; a store without conditional writes turns
claims off with one warning."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from nbpipe.engine.claiming import POLL_MIN_MS, Claimant, claimant_for
from nbpipe.store.claims import ClaimStore, Leases
from nbpipe.store.remote import Remote

KEY = "a" * 64
DIGEST = "b" * 64


@pytest.fixture
def team():
    from tests.fakes.team_remote import TeamRemote

    remote = TeamRemote()
    yield remote
    remote.close()


@pytest.fixture
def quick_looks(monkeypatch):
    """A waiter looks at a claim every 50 ms, not every tenth of its lease: at the 60 s leases
    that keep a claim from lapsing within a test, 2 s a look was most of the test's time, and
    how often it looks is not what these tests check."""
    monkeypatch.setattr(Claimant, "poll", POLL_MIN_MS / 1000)


def opened(team, monkeypatch) -> Remote:
    for name, value in team.env().items():
        monkeypatch.setenv(name, value)
    return Remote(team.url, team.env()["NBPIPE_REMOTE_ENDPOINT"])


def push_record(team, key: str = KEY, digest: str = DIGEST) -> None:
    """Another runner's take of `key` lands on the remote (its record; what `found` reads)."""
    team.s3.put_object(Bucket=team.bucket, Key=f"cache/takes/{key}/{digest}.json",
                       Body=json.dumps({"take": {}}).encode())


def test_a_claim_is_created_once_renewed_by_its_etag_and_released_by_its_holder(
        team, monkeypatch):
    remote = opened(team, monkeypatch)
    mine, theirs = ClaimStore(remote, 60, "mine"), ClaimStore(remote, 60, "theirs")
    etag = mine.create(KEY)
    assert etag is not None
    assert theirs.create(KEY) is None  # create-only: the second runner does not get it
    assert theirs.look(KEY) == etag
    renewed = mine.renew(KEY, etag)
    assert renewed is not None and renewed != etag  # each beat is a new ETag
    assert theirs.renew(KEY, etag) is None  # a stale ETag changes nothing
    assert theirs.look(KEY) == renewed
    theirs.release(KEY, etag)  # not the claim's ETag now: it stays
    assert mine.look(KEY) == renewed
    mine.release(KEY, renewed)
    assert mine.look(KEY) is None
    assert theirs.create(KEY) is not None  # free again
    assert team.objects("claims") == [f"cache/claims/{KEY}"]


def test_a_lease_is_renewed_while_held_and_lost_once_taken_over(team, monkeypatch):
    remote = opened(team, monkeypatch)
    store = ClaimStore(remote, 0.6, "mine")
    leases = Leases(store)
    etag = store.create(KEY)
    leases.hold(KEY, etag)
    try:
        for _ in range(100):  # renewed on its own thread, every third of the lease
            if store.look(KEY) != etag:
                break
            time.sleep(0.05)
        assert store.look(KEY) == leases.held[KEY] != etag
        # another runner takes it over (as if our lease had lapsed): ours is lost, not renewed
        assert ClaimStore(remote, 0.6, "theirs").renew(KEY, leases.held[KEY]) is not None
        for _ in range(100):
            if KEY in leases.lost:
                break
            time.sleep(0.05)
        assert KEY in leases.lost and KEY not in leases.held
    finally:
        leases.close()
    assert store.look(KEY) is not None  # close releases only what it holds: theirs stays


def test_a_waiter_restores_the_take_of_a_live_claim_and_never_takes_it_over(team, monkeypatch):
    remote = opened(team, monkeypatch)
    holder = claimant_for(remote, 3, lambda text: None)
    waiter = claimant_for(remote, 3, lambda text: None)
    assert holder is not None and waiter is not None
    looked: list[str] = []

    async def found(digest: str) -> str | None:
        looked.append(digest)
        return f"take {digest[:4]}"

    async def scene() -> tuple[object, object]:
        assert await holder.claim(KEY, found) is None  # nothing there: the holder sends
        waiting = asyncio.ensure_future(waiter.claim(KEY, found))
        await asyncio.sleep(0.5)  # the waiter looks a few times: the claim is live
        assert not waiting.done()
        push_record(team)  # the holder's take lands, then its claim goes (pusher.py)
        holder.leases.release(KEY)
        return await asyncio.wait_for(waiting, 60), waiter.leases.held

    try:
        take, held = asyncio.run(scene())
    finally:
        holder.close()
        waiter.close()
    assert take == "take bbbb" and looked == [DIGEST]
    assert held == {}  # the waiter never held the claim: it paid nothing
    assert team.objects("claims") == []


def test_an_expired_lease_is_taken_over_with_one_conditional_write(team, monkeypatch):
    remote = opened(team, monkeypatch)
    dead = ClaimStore(remote, 0.5, "dead")
    etag = dead.create(KEY)  # a runner claimed it, then died: nobody renews it
    waiter = claimant_for(remote, 0.5, lambda text: None)
    assert waiter is not None

    async def nothing(digest: str) -> None:
        return None

    try:
        # taken over (the bound only fails a test that would wait for ever): this one sends
        assert asyncio.run(asyncio.wait_for(waiter.claim(KEY, nothing), 60)) is None
        assert KEY in waiter.leases.held
        assert dead.renew(KEY, etag) is None  # the dead runner's ETag is gone
    finally:
        waiter.close()
    assert team.objects("claims") == []  # released as the build ends


def test_a_claim_released_without_a_take_is_claimed_by_the_waiter(team, monkeypatch,
                                                                  quick_looks):
    remote = opened(team, monkeypatch)
    failing = ClaimStore(remote, 60, "failing")  # a lease that would not lapse in this test
    etag = failing.create(KEY)
    waiter = claimant_for(remote, 60, lambda text: None)
    assert waiter is not None

    async def nothing(digest: str) -> None:
        return None

    async def scene() -> object:
        waiting = asyncio.ensure_future(waiter.claim(KEY, nothing))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        failing.release(KEY, etag)  # its request brought no image
        return await asyncio.wait_for(waiting, 60)

    try:
        assert asyncio.run(scene()) is None and KEY in waiter.leases.held
    finally:
        waiter.close()


def test_a_take_pushed_before_the_claim_is_restored_not_paid_for(team, monkeypatch):
    remote = opened(team, monkeypatch)
    push_record(team)  # the other runner pushed it and released its claim since we planned
    claimant = claimant_for(remote, 60, lambda text: None)
    assert claimant is not None

    async def found(digest: str) -> str:
        return digest

    try:
        assert asyncio.run(claimant.claim(KEY, found)) == DIGEST
        assert claimant.leases.held == {}
    finally:
        claimant.close()
    assert team.objects("claims") == []


class Ignoring:
    """An S3 API that accepts conditional headers and ignores them (some S3 clones do)."""

    def __init__(self, fs):
        self.fs = fs

    def call_s3(self, method, **kwargs):
        kwargs.pop("IfNoneMatch", None)
        kwargs.pop("IfMatch", None)
        return self.fs.call_s3(method, **kwargs)


def test_a_store_that_ignores_conditional_writes_turns_claims_off_with_one_warning(
        team, monkeypatch):
    remote = opened(team, monkeypatch)
    remote.fs = Ignoring(remote.fs)
    said: list[str] = []
    claimant = claimant_for(remote, 60, said.append)
    assert claimant is not None and claimant.store.s3  # it speaks S3's API: the probe tells

    async def nothing(digest: str) -> None:
        return None

    async def twice() -> list[object]:
        return [await claimant.claim(KEY, nothing), await claimant.claim("c" * 64, nothing)]

    try:
        assert asyncio.run(twice()) == [None, None]  # sent unclaimed
    finally:
        claimant.close()
    assert len(said) == 1 and "claims are off" in said[0] and "ignores If-None-Match" in said[0]
    assert team.objects("claims") == []  # the probe cleaned up; no claim was written


def test_a_folder_remote_has_no_claims_and_says_so_once(tmp_path):
    said: list[str] = []
    claimant = claimant_for(Remote(f"file://{tmp_path}/team"), 60, said.append)
    assert isinstance(claimant, Claimant)

    async def nothing(digest: str) -> None:
        return None

    async def twice() -> list[object]:
        return [await claimant.claim(KEY, nothing), await claimant.claim(KEY, nothing)]

    assert asyncio.run(twice()) == [None, None]
    assert len(said) == 1 and "S3's API" in said[0]
    assert not (tmp_path / "team" / "claims").exists()
    assert claimant_for(None, 60, said.append) is None  # no remote: no claims


def test_a_waiter_sends_nothing_once_the_build_is_stopped(team, monkeypatch, quick_looks):
    """Ctrl-C (or a refused key) while a runner waits on another's claim: it does not take the
    claim over and pay once the wait ends; it stops."""
    from nbpipe.errors import BuildStopped

    remote = opened(team, monkeypatch)
    ClaimStore(remote, 60, "live").create(KEY)  # held, and not lapsing within this test
    asked: list[int] = []

    def stopped() -> str | None:
        asked.append(1)
        return "interrupted" if len(asked) > 2 else None  # after two looks at the claim

    waiter = claimant_for(remote, 60, lambda text: None, stopped)
    assert waiter is not None

    async def nothing(digest: str) -> None:
        return None

    try:
        with pytest.raises(BuildStopped, match="interrupted"):
            asyncio.run(asyncio.wait_for(waiter.claim(KEY, nothing), 60))
        assert waiter.leases.held == {}
    finally:
        waiter.close()


def test_a_remote_that_fails_mid_build_turns_claims_off_once_and_sends_unclaimed(
        team, monkeypatch):
    # one attempt per request: with the network gone, botocore's retries only wait out their
    # backoff (seconds) before the same failure
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    remote = opened(team, monkeypatch)
    said: list[str] = []
    claimant = claimant_for(remote, 60, said.append)
    assert claimant is not None

    async def nothing(digest: str) -> None:
        return None

    async def scene() -> list[object]:
        first = await claimant.claim(KEY, nothing)  # held
        team.unplug()  # the network goes while the claim is held
        return [first, await claimant.claim("c" * 64, nothing),
                await claimant.claim("d" * 64, nothing)]

    try:
        assert asyncio.run(asyncio.wait_for(scene(), 120)) == [None, None, None]
        assert claimant.leases.held == {}  # forgotten: not renewed nor released, it lapses
    finally:
        claimant.close()  # tries nothing more of a remote that does not answer
        team.restore()
    assert len(said) == 1 and "claims are off (the remote failed" in said[0]
    assert team.objects("claims") == [f"cache/claims/{KEY}"]  # left to lapse
