"""Review3 finding on docs/nbpipe-ci.sh's job budget: a build's spend is read from its own
summary, so a state.json a CI cache restored (another nbpipe's, whose totals nbpipe drops)
never raises the job's cap."""

from __future__ import annotations

from tests.engine.test_prloop import (  # noqa: F401 - fixtures
    identity,
    main_job_that_builds_again,
    needs_git,
    origin,
)


@needs_git
def test_a_stale_state_restored_by_the_cache_never_raises_the_jobs_cap(origin, fake_hiapi,
                                                                       tmp_path):
    done = main_job_that_builds_again(origin, tmp_path, restored={
        "version": 2, "totals": {"spent_usd": "1.00", "saved_usd": "0"}})
    assert "building again on it" in done.stdout  # the replay conflicted (both added the lock)
    assert fake_hiapi.counts["creates"] * 0.05 <= 0.3 + 1e-9, done.stdout
