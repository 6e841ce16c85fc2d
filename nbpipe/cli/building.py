"""The commands about building: validate, plan, show, build, explain, graph."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nbpipe.cli.shared import AS_JSON, OFFLINE, SHARD, Edge, F, Usd, target
from nbpipe.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from nbpipe.engine.build import BuildOptions
    from nbpipe.plan.planner import Project
    from nbpipe.settings import Shard


@click.command()
@click.pass_context
def validate(ctx: click.Context) -> int:
    """Check the manifest; print every problem with its line."""
    from nbpipe.manifest.lint import warnings

    edge = Edge.of(ctx)
    project = edge.project(warn=True)
    for warning in warnings(project.loaded):
        click.echo(warning.render(), err=True)
    targets, frames = len(project.targets()), len(project.frames)
    label = "nbpipe.yaml" if edge.root == Path(".") else os.path.join(edge.root, "nbpipe.yaml")
    click.echo(f"{label}: ok · {targets} target{'s' * (targets != 1)}, "
               f"{frames} frame{'s' * (frames != 1)}")
    return EXIT_OK


@click.command()
@click.argument("frames", nargs=-1)
@AS_JSON
@target("Plan every frame on this backend.")
@click.option("--compare", metavar="A,B,...", help="Cost per frame under several profiles "
              "('default' is the manifest without one).")
@OFFLINE
@SHARD
@click.pass_context
def plan(ctx: click.Context, frames: tuple[str, ...], as_json: bool, backend: str | None,
         profile: str | None, compare: str | None, offline: bool, shard: Shard | None) -> int:
    """What a build would do, why, and what it would cost. FRAMES take globs: 'shoe/*'."""
    from nbpipe.ops.prices import budget_note, price_source
    from nbpipe.query.view import plan_project
    from nbpipe.ui import present

    edge = Edge.of(ctx)
    if compare:
        names = [n.strip() for n in compare.split(",") if n.strip()]
        plans = {n: plan_project(edge.project(backend, None if n == "default" else n, True),
                                 edge.cache_dir(), frames, offline, shard) for n in names}
        click.echo(present.compare_json(plans) if as_json else present.compare_table(plans))
        return EXIT_OK
    project = edge.project(backend, profile, warn=True)
    result = plan_project(project, edge.cache_dir(), frames, offline, shard)
    if as_json:
        click.echo(present.plan_json(result))
        return EXIT_OK
    click.echo(present.plan_table(result))
    for hint in present.price_hints(project.catalog, result):
        click.echo(f"hint: {hint}")
    click.echo(f"prices: {price_source(edge.cache_dir(), project)}")
    note = budget_note(edge.cache_dir(), result)
    if note:
        click.echo(f"budget: {note}")
    return EXIT_OK


def _whole(edge: Edge, backend: str | None, profile: str | None) -> Project:
    """The whole project, for an edit path that cannot carry its frames after all."""
    if edge.settings.explain:
        click.echo("nbpipe: the edit path fell back: the lock changed since the check, or a "
                   "new output meets a carried frame's", err=True)
    return edge.project(backend, profile, warn=True)


@click.command()
@click.argument("frame")
@AS_JSON
@target("Show the request for this backend.")
@click.pass_context
def show(ctx: click.Context, frame: str, as_json: bool, backend: str | None,
         profile: str | None) -> int:
    """The exact request FRAME would send, and its frame key."""
    from nbpipe.backends import describe_request, endpoint
    from nbpipe.query.inspect import input_mimes, shown_frame
    from nbpipe.ui import present

    edge = Edge.of(ctx)
    project = edge.project(backend, profile)
    found = shown_frame(project, edge.cache_dir(), frame)
    request = describe_request(found, input_mimes(project, edge.cache_dir(), found))
    render = present.show_json if as_json else present.show_text
    click.echo(render(found, endpoint(found), request))
    return EXIT_OK


def build_options(frames: tuple[str, ...], backend: str | None, profile: str | None, *,
                  jobs: int | None, max_cost: Decimal | None, trust_prices: bool,
                  fail_fast: bool, keep_going: bool, offline: bool, remote_errors: str,
                  force: bool, wait: bool = True, shard: Shard | None = None) -> BuildOptions:
    """The one place a command line becomes the engine's BuildOptions."""
    from nbpipe.engine.build import BuildOptions

    if fail_fast and keep_going:
        raise UsageError("--fail-fast and --keep-going contradict each other")
    return BuildOptions(patterns=frames, force=force, backend=backend, jobs=jobs,
                        max_cost=max_cost, fail_fast=fail_fast, profile=profile,
                        offline=offline, trust_prices=trust_prices, remote_errors=remote_errors,
                        wait=wait, shard=shard)


def build_flags(command: F) -> F:
    """The options that shape what a build may send: how many at once, how much, and what a
    failure stops (spelled here, apart from the command, to keep `build`'s signature legible)."""
    for option in reversed(BUILD_FLAGS):
        command = option(command)
    return command


BUILD_FLAGS = [
    click.option("-j", "--jobs", type=click.IntRange(1, 256),
                 help="Frames in flight per backend (default: the manifest's `limits:`, else "
                 "the catalogue's default for the backend)."),
    click.option("--max-cost", type=Usd(), metavar="USD",
                 help="Spend at most this much; frames that do not fit are skipped and listed."),
    click.option("--trust-manifest-prices", "trust_prices", is_flag=True,
                 help="Measure --max-cost in the manifest's `pricing:` even where it is below "
                 "the list price (by default a manifest can raise prices, never lower the "
                 "budget's measure)."),
    click.option("--fail-fast", is_flag=True, help="Send nothing new after the first failure."),
    click.option("--keep-going", is_flag=True, help="Build what does not depend on a failure "
                 "(the default)."),
]


@click.command()
@click.argument("frames", nargs=-1)
@target("Render every frame on this backend.")
@build_flags
@click.option("--no-wait", is_flag=True, help="Wait for nothing: fail at once if another build "
              "holds the project, and leave batch jobs running (their frames end `pending`; "
              "a later build collects them).")
@click.option("--offline", is_flag=True, help="Never touch the remote cache.")
@click.option("--remote-errors", type=click.Choice(["fail", "render"]), default="fail",
              show_default=True, help="When the remote cache cannot be read: fail the frames "
              "that would render (the team may own their images), or render them anyway.")
@click.option("--check", is_flag=True, help="Render nothing; exit 1 if any frame is not fresh "
              "(with --shard: any frame of that shard).")
@SHARD
@click.option("--force", is_flag=True, help="Render a new take even when fresh; overwrite "
              "outputs modified outside nbpipe.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines events; the last is the summary.")
@click.option("--report", "with_report", is_flag=True, help="Refresh the report afterwards "
              "(out/index.html, or the section's folder: out/@preview/index.html).")
@click.pass_context
def build(ctx: click.Context, frames: tuple[str, ...], backend: str | None, profile: str | None,
          jobs: int | None, max_cost: Decimal | None, trust_prices: bool, fail_fast: bool,
          keep_going: bool, no_wait: bool, offline: bool, remote_errors: str, check: bool,
          shard: Shard | None, force: bool, as_json: bool, with_report: bool) -> int:
    """Restore or render what changed, in dependency order, and update nbpipe.lock."""
    edge = Edge.of(ctx)
    since = None  # the edit path's start: the fingerprint, when only the manifest changed
    # a shard plans its share (the fast path knows nothing of shares, and counts every frame)
    if not frames and not force and not with_report and shard is None:
        from nbpipe.engine.noop import noop_summary

        found = edge.verdict(backend, profile)
        if found.fresh is not None:
            click.echo(noop_summary(found.fresh, check, as_json))
            return EXIT_OK
        if edge.settings.explain:
            click.echo(f"nbpipe: the no-op fast path missed: {found.why}", err=True)
        # not for --check (the CI gate plans every frame) nor --json (an event per frame)
        since = found.since if not check and not as_json else None
    from nbpipe.engine.session import run_build, run_check
    from nbpipe.ui.sinks import noted, say_check, sink_for

    options = build_options(frames, backend, profile, jobs=jobs, max_cost=max_cost,
                            trust_prices=trust_prices, fail_fast=fail_fast,
                            keep_going=keep_going, offline=offline,
                            remote_errors=remote_errors, force=force, wait=not no_wait,
                            shard=shard)
    project = edge.project(backend, profile, warn=True, since=since)
    if edge.settings.explain and project.since is not None:
        planned = sorted({f.target for f in project.frames.values()})
        click.echo(f"nbpipe: the edit path plans {len(planned)} target"
                   f"{'s' * (len(planned) != 1)} ({', '.join(planned[:6]) or 'none'}) and "
                   f"carries {len(project.carried)}", err=True)
    if check:
        plan = run_check(project, edge.cache_dir(), frames, noted(sink_for(as_json, 0)),
                         edge.settings, shard)
        return EXIT_FAILED if say_check(plan, as_json) else EXIT_OK
    events = sink_for(as_json, len(project.share(options.patterns, shard)[0]))
    summary = run_build(project, edge.cache_dir(), options, events, noted(events),
                        not no_wait, edge.settings,
                        lambda: _whole(edge, backend, profile))
    code = summary.exit_code  # frames skipped or left out are missing: CI must not look green
    if with_report:
        from nbpipe.ui.report import report_path, write_report

        page = write_report(project, edge.cache_dir(), report_path(project))
        click.echo(f"wrote {page}", err=as_json)
    return code


@click.command()
@click.argument("frame")
@target("Explain as if built on this backend.")
@click.pass_context
def explain(ctx: click.Context, frame: str, backend: str | None, profile: str | None) -> int:
    """Why FRAME is fresh, or will be restored, rendered or blocked: field by field."""
    from nbpipe.query.inspect import explain as explain_frame

    edge = Edge.of(ctx)
    click.echo(explain_frame(edge.project(backend, profile), edge.cache_dir(), frame))
    return EXIT_OK


@click.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True)
@click.pass_context
def graph(ctx: click.Context, fmt: str) -> int:
    """The frame graph (edits depend on their inputs) as Mermaid or Graphviz DOT."""
    from nbpipe.plan.graph import render_graph

    click.echo(render_graph(Edge.of(ctx).project().frames, fmt))
    return EXIT_OK


COMMANDS = (validate, plan, show, build, explain, graph)
