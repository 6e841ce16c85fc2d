"""Review3 findings on `report_unreported` (engine/recover.py): which of an earlier build's
paid-but-unsaid entries this build says."""

from __future__ import annotations

import json
from decimal import Decimal

from nbpipe.catalog import builtin
from nbpipe.plan.budget import Budget
from nbpipe.plan.planner import open_project
from nbpipe.store.journal import Journal
from tests.engine.test_renderer import HIAPI, HIAPI_PRICE, Scripted, build, dies_at_the_summary


def test_money_of_a_backend_with_no_account_is_said_by_the_next_build(make_project):
    root = make_project(HIAPI)
    paid = Scripted("hiapi", ["ok", "ok"], account=None)
    dies_at_the_summary(root, paid)  # paid, never said
    second, _ = build(root, paid)
    assert second.spent_earlier == HIAPI_PRICE == paid.billed
    assert not Journal(root / ".nbpipe" / "journal.jsonl").unreported


PREVIEW = HIAPI.replace("backend: hiapi, model: Nano-Banana", "backend: preview")


def test_a_preview_build_killed_at_its_summary_leaves_the_journal_empty_after_the_next(
        make_project):
    from nbpipe.backends import open_backend

    root = make_project(PREVIEW)
    preview = open_backend("preview", 1)
    dies_at_the_summary(root, preview)
    assert Journal(root / ".nbpipe" / "journal.jsonl").unreported  # the killed build's render
    build(root, preview)
    assert (root / ".nbpipe" / "journal.jsonl").stat().st_size == 0


def test_a_task_counted_as_left_then_collected_by_a_build_killed_at_its_summary_is_said(
        make_project):
    """Counted as left out (its `reported` mark is in memory only, until the summary is said),
    then collected at the end of the same build: the build dies at its summary, and compaction
    must keep the entry for the next build to say."""
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["still-out", "ok"])  # left out, then its end-of-build poll
    dies_at_the_summary(root, hiapi)
    second, _ = build(root, hiapi)
    assert second.spent_earlier == HIAPI_PRICE == hiapi.billed


def test_another_accounts_lost_gemini_call_is_not_this_builds_money(make_project):
    from tests.engine.test_renderer import GEMINI

    root = make_project(GEMINI)
    theirs = {"op": "intent", "key": "d" * 64, "take": 1, "frame": "their/frame",
              "backend": "gemini", "account": "another-account",
              "request": {"model": "gemini-3.1-flash-image", "prompt": "not ours",
                          "params": {}}}
    path = root / ".nbpipe" / "journal.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(theirs) + "\n")
    gemini = Scripted("gemini", ["ok"])  # pays from account-1
    # room for this build's frame (its price and its token bound), not for the other's call too
    need = Budget(None, builtin(), False).reservation(open_project(root).frames["a"])
    summary, _ = build(root, gemini, max_cost=need + Decimal("0.01"))
    assert (summary.rendered, summary.maybe_billed) == (1, 0)
