"""The command line: argument parsing, the one error handler, exit codes (see errors.py).

Heavy modules are imported inside the commands that need them, so `nbpipe --help` and the
no-op build path start fast.
"""

from __future__ import annotations

import os
import shlex
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from nbpipe import __version__
from nbpipe.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    NbpipeError,
    UsageError,
)
from nbpipe.launch import BACKENDS, cache_dir

BACKEND_CHOICE = click.Choice(BACKENDS)  # default: $NBPIPE_BACKEND


class Usd(click.ParamType):
    """An amount of US dollars: a finite decimal of 0 or more (NaN would compare false against
    every price, so a NaN cap would let everything through or nothing; an infinite one is no
    cap at all, which is what leaving the option out says)."""

    name = "USD"

    def convert(self, value, param, ctx):
        if isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value).strip().removeprefix("$"))
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            self.fail(f"{value!r} is not an amount of US dollars; give 0 or more, like 2.50",
                      param, ctx)
        return amount


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Run as if nbpipe was started in DIR.", metavar="DIR")
@click.version_option(version=__version__, prog_name="nbpipe")
@click.pass_context
def cli(ctx: click.Context, directory: Path) -> None:
    """make for images: render only what changed, never pay twice."""
    ctx.obj = directory


# NBPIPE_BACKEND / NBPIPE_PROFILE: a default every command honours, so `--backend preview`
# need not be repeated (and a plain `report` does not call every frame stale).
PROFILE = click.option("--profile", metavar="NAME", envvar="NBPIPE_PROFILE",
                       help="Apply a profile of the manifest (or the built-in 'draft'); "
                       "default: $NBPIPE_PROFILE.")


def _project(ctx: click.Context, backend: str | None = None, profile: str | None = None,
             warn: bool = False):
    """The loaded project; with `warn`, its warnings (a model shutting down soon) go to stderr,
    each once per command."""
    from nbpipe.ops.prices import current_catalog
    from nbpipe.plan.planner import open_project

    root: Path = ctx.obj
    if not os.path.isdir(root):  # not Path.is_dir: that raises on a name too long
        raise UsageError(f"no such directory: {root}")
    project = open_project(root, backend, profile, current_catalog(_cache_dir(root)))
    said = ctx.meta.setdefault("nbpipe.warned", set())
    for warning in project.warnings if warn else ():
        if warning not in said:
            said.add(warning)
            click.echo(warning.render(), err=True)
    return project


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> int:
    """Check the manifest; print every problem with its line."""
    from nbpipe.manifest.lint import warnings

    project = _project(ctx, warn=True)
    for warning in warnings(project.loaded):
        click.echo(warning.render(), err=True)
    targets, frames = len(project.targets()), len(project.frames)
    click.echo(f"{_manifest_label(ctx)}: ok · {targets} target{'s' * (targets != 1)}, "
               f"{frames} frame{'s' * (frames != 1)}")
    return EXIT_OK


@cli.command()
@click.argument("frames", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Plan every frame on this backend.")
@PROFILE
@click.option("--compare", metavar="A,B,...", help="Cost per frame under several profiles "
              "('default' is the manifest without one).")
@click.option("--offline", is_flag=True, help="Do not look at the remote cache.")
@click.pass_context
def plan(ctx: click.Context, frames: tuple[str, ...], as_json: bool, backend: str | None,
         profile: str | None, compare: str | None, offline: bool) -> int:
    """What a build would do, why, and what it would cost. FRAMES take globs: 'shoe/*'."""
    from nbpipe.ops.prices import budget_note, price_source
    from nbpipe.query.view import plan_project
    from nbpipe.ui import present

    if compare:
        names = [n.strip() for n in compare.split(",") if n.strip()]
        plans = {n: plan_project(_project(ctx, backend, None if n == "default" else n, True),
                                 _cache_dir(ctx.obj), frames, offline) for n in names}
        click.echo(present.compare_json(plans) if as_json else present.compare_table(plans))
        return EXIT_OK
    project = _project(ctx, backend, profile, warn=True)
    result = plan_project(project, _cache_dir(ctx.obj), frames, offline)
    if as_json:
        click.echo(present.plan_json(result))
    else:
        click.echo(present.plan_table(result))
        for hint in present.price_hints(project.catalog, result):
            click.echo(f"hint: {hint}")
        click.echo(f"prices: {price_source(_cache_dir(ctx.obj), project)}")
        note = budget_note(_cache_dir(ctx.obj), result)
        if note:
            click.echo(f"budget: {note}")
    return EXIT_OK


@cli.command()
@click.argument("frame")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Show the request for this backend.")
@PROFILE
@click.pass_context
def show(ctx: click.Context, frame: str, as_json: bool, backend: str | None,
         profile: str | None) -> int:
    """The exact request FRAME would send, and its frame key."""
    from nbpipe.backends import describe_request, endpoint
    from nbpipe.ui import present

    project = _project(ctx, backend, profile)
    found = project.frames.get(frame)
    if found is None:
        from nbpipe.manifest.source import did_you_mean

        raise UsageError(f"no frame named '{frame}'", did_you_mean(frame, project.frames)
                         or "`nbpipe plan` lists the frames")
    request = describe_request(found)
    render = present.show_json if as_json else present.show_text
    click.echo(render(found, endpoint(found), request))
    return EXIT_OK


def _cache_dir(root: Path) -> Path:
    shared = os.environ.get("NBPIPE_CACHE_DIR")
    if shared and os.path.exists(shared) and not os.path.isdir(shared):
        raise UsageError(f"NBPIPE_CACHE_DIR is not a directory: {shared}",
                         "point it at a directory (nbpipe creates it if missing)")
    return cache_dir(root)


def _writing(root: Path):
    """The lock every command that writes the cache, the lock or outputs holds (as `build`)."""
    from nbpipe.engine.session import exclusive

    class Notes:
        @staticmethod
        def note(text: str) -> None:
            click.echo(text, err=True)

    return exclusive(root / ".nbpipe", _cache_dir(root), True, Notes.note)


@cli.command()
@click.argument("frames", nargs=-1)
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Render every frame on this backend.")
@PROFILE
@click.option("-j", "--jobs", type=click.IntRange(1, 256),
              help="Frames in flight per backend (default: the manifest's `limits:`, else "
              "the catalogue's default for the backend).")
@click.option("--max-cost", type=Usd(), metavar="USD",
              help="Spend at most this much; frames that do not fit are skipped and listed.")
@click.option("--trust-manifest-prices", "trust_prices", is_flag=True,
              help="Measure --max-cost in the manifest's `pricing:` even where it is below the "
              "list price (by default a manifest can raise prices, never lower the budget's measure).")
@click.option("--fail-fast", is_flag=True, help="Send nothing new after the first failure.")
@click.option("--keep-going", is_flag=True, help="Build what does not depend on a failure "
              "(the default).")
@click.option("--no-wait", is_flag=True, help="Fail at once if another build holds the project.")
@click.option("--offline", is_flag=True, help="Never touch the remote cache.")
@click.option("--remote-errors", type=click.Choice(["fail", "render"]), default="fail",
              show_default=True, help="When the remote cache cannot be read: fail the frames "
              "that would render (the team may own their images), or render them anyway.")
@click.option("--check", is_flag=True, help="Render nothing; exit 1 if any frame is not fresh.")
@click.option("--force", is_flag=True, help="Render a new take even when fresh; overwrite "
              "outputs modified outside nbpipe.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines events; the last is the summary.")
@click.option("--report", "with_report", is_flag=True, help="Refresh out/index.html afterwards.")
@click.pass_context
def build(ctx: click.Context, frames: tuple[str, ...], backend: str | None, profile: str | None,
          jobs: int | None,
          max_cost: Decimal | None, fail_fast: bool, keep_going: bool, no_wait: bool, offline: bool,
          remote_errors: str, check: bool, force: bool, as_json: bool, with_report: bool,
          trust_prices: bool) -> int:
    """Restore or render what changed, in dependency order, and update nbpipe.lock."""
    root: Path = ctx.obj
    if not frames and not force and not with_report:
        from nbpipe.engine.noop import answer

        summary = answer(root, _cache_dir(root), backend, profile, check, as_json)
        if summary is not None:
            click.echo(summary)
            return EXIT_OK
    from nbpipe.engine.build import BuildOptions
    from nbpipe.engine.session import run_build, run_check

    if fail_fast and keep_going:
        raise UsageError("--fail-fast and --keep-going contradict each other")
    project = _project(ctx, backend, profile, warn=True)
    if check:
        return run_check(project, _cache_dir(root), frames, as_json)
    options = BuildOptions(patterns=frames, force=force, backend=backend, jobs=jobs,
                           max_cost=max_cost,
                           fail_fast=fail_fast, profile=profile, offline=offline,
                           trust_prices=trust_prices, remote_errors=remote_errors)
    code = run_build(project, _cache_dir(root), options, as_json, wait=not no_wait)
    if with_report:
        from nbpipe.ui.report import write_report

        page = write_report(project, _cache_dir(root), Path("out/index.html"))
        click.echo(f"wrote {page}", err=as_json)
    return code


@cli.command()
@click.argument("frame")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Explain as if built on this backend.")
@PROFILE
@click.pass_context
def explain(ctx: click.Context, frame: str, backend: str | None, profile: str | None) -> int:
    """Why FRAME is fresh, or will be restored, rendered or blocked: field by field."""
    from nbpipe.query.inspect import explain as explain_frame

    click.echo(explain_frame(_project(ctx, backend, profile), _cache_dir(ctx.obj), frame))
    return EXIT_OK


@cli.command()
@click.argument("frame")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND")
@PROFILE
@click.pass_context
def takes(ctx: click.Context, frame: str, backend: str | None, profile: str | None) -> int:
    """List the takes of FRAME's current request (the pinned one is marked)."""
    from nbpipe.query.inspect import list_takes

    click.echo(list_takes(_project(ctx, backend, profile), _cache_dir(ctx.obj), frame))
    return EXIT_OK


@cli.command()
@click.argument("frame")
@click.argument("take")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND")
@PROFILE
@click.option("--force", is_flag=True, help="Overwrite an output modified outside nbpipe.")
@click.pass_context
def pin(ctx: click.Context, frame: str, take: str, backend: str | None, profile: str | None,
        force: bool) -> int:
    """Pin TAKE (a number from `takes`, or a digest prefix) of FRAME; free, from the cache."""
    from nbpipe.query.inspect import pin as pin_take

    project = _project(ctx, backend, profile)
    with _writing(ctx.obj):
        click.echo(pin_take(project, _cache_dir(ctx.obj), frame, take, force))
    return EXIT_OK


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True)
@click.pass_context
def graph(ctx: click.Context, fmt: str) -> int:
    """The frame graph (edits depend on their inputs) as Mermaid or Graphviz DOT."""
    from nbpipe.plan.graph import render_graph

    click.echo(render_graph(_project(ctx).frames, fmt))
    return EXIT_OK


@cli.command()
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.option("--max-size", help="Remove oldest unpinned takes until the cache fits, e.g. 2G.")
@click.option("--older-than", help="Remove unpinned takes older than this, e.g. 30d "
              "(the default when neither this nor --max-size is given).")
@click.option("--remote", "on_remote", is_flag=True, help="Collect the remote cache instead.")
@click.option("--refs", multiple=True, metavar="REF",
              help="With --remote: git refs whose nbpipe.lock pins images (default: all branches).")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, max_size: str | None, older_than: str | None,
       on_remote: bool, refs: tuple[str, ...]) -> int:
    """Free cache space; never removes a take pinned by a lock."""
    if on_remote:
        return _gc_remote(ctx, dry_run, max_size, older_than, refs)
    from nbpipe.ops.maintain import DEFAULT_OLDER_THAN, branch_pins, parse_age, parse_size, policy
    from nbpipe.ops.maintain import gc as collect
    from nbpipe.store.cache import Cache
    from nbpipe.store.lock import Lock

    root: Path = ctx.obj
    default = not (max_size or older_than)
    older_than = DEFAULT_OLDER_THAN if default else older_than
    with _writing(root):
        cache = Cache(_cache_dir(root), create=False)
        try:
            lines = collect(cache, Lock.load(root), parse_size(max_size) if max_size else None,
                            parse_age(older_than) if older_than else None, dry_run,
                            branch_pins(root))
        finally:
            cache.close()
    click.echo("\n".join([policy(max_size, older_than, default), *lines]))
    return EXIT_OK


def _gc_remote(ctx: click.Context, dry_run: bool, max_size: str | None,
               older_than: str | None, refs: tuple[str, ...]) -> int:
    from nbpipe.ops.maintain import gc_remote, parse_age, pins_in_git
    from nbpipe.store.lock import Lock
    from nbpipe.store.workspace import open_remote

    if max_size:
        raise UsageError("--max-size applies to the local cache", "use --older-than with --remote")
    project = _project(ctx)
    remote = open_remote(project)
    if remote is None:
        raise UsageError("no remote cache is configured",
                         "set `cache: {remote: s3://bucket/prefix}` or NBPIPE_REMOTE")
    pinned, read = pins_in_git(ctx.obj, refs)
    pinned |= Lock.load(ctx.obj).pinned()  # and the working tree's lock
    lines = gc_remote(remote, pinned, parse_age(older_than) if older_than else None, dry_run)
    click.echo("\n".join([f"pins read from {len(read)} git ref(s) and the working tree", *lines]))
    return EXIT_OK


@cli.command()
@click.option("--orphans", is_flag=True, help="Outputs of frames no longer declared.")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.pass_context
def clean(ctx: click.Context, orphans: bool, dry_run: bool) -> int:
    """Remove files nbpipe made that nothing declares any more."""
    from nbpipe.ops.maintain import clean_orphans
    from nbpipe.store.state import State

    if not orphans:
        raise UsageError("say what to clean", "nbpipe clean --orphans")
    with _writing(ctx.obj):
        state = State(ctx.obj)
        click.echo("\n".join(clean_orphans(ctx.obj, state, dry_run)))
        state.save()
    return EXIT_OK


@cli.command()
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Only this backend's models.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--refresh", is_flag=True, help="Fetch HiAPI's public price list into the cache.")
@click.pass_context
def models(ctx: click.Context, backend: str | None, as_json: bool, refresh: bool) -> int:
    """Every model: status and dates, prices per tier (and where they come from), limits."""
    from nbpipe.catalog import builtin, today
    from nbpipe.errors import ManifestError
    from nbpipe.manifest.load import load_manifest
    from nbpipe.ops.prices import current_catalog, models_json, models_table
    from nbpipe.ops.prices import refresh as refresh_prices

    root: Path = ctx.obj
    if refresh:
        click.echo(refresh_prices(_cache_dir(root)), err=as_json)
    catalog = current_catalog(_cache_dir(root)) or builtin()
    if (root / "nbpipe.yaml").exists():
        try:  # the manifest's `pricing:` applies even while other parts of it are wrong
            catalog = catalog.with_prices(load_manifest(root).manifest.pricing)
        except ManifestError:
            click.echo("note: nbpipe.yaml does not load; its `pricing:` is not applied", err=True)
    render = models_json if as_json else models_table
    click.echo(render(catalog, backend, today()))
    return EXIT_OK


prices = click.Command("prices", callback=models.callback, params=models.params, hidden=True,
                       help="Alias of `models`.")
cli.add_command(prices)


@cli.command()
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("out/index.html"), show_default=True, help="Where to write the page.")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Report as built on this backend.")
@PROFILE
@click.pass_context
def report(ctx: click.Context, out: Path, backend: str | None, profile: str | None) -> int:
    """A static HTML contact sheet of every frame (thumbnails beside it, relative links)."""
    from nbpipe.ui.report import write_report

    page = write_report(_project(ctx, backend, profile), _cache_dir(ctx.obj), out)
    click.echo(f"wrote {page}")
    return EXIT_OK


@cli.command()
@click.argument("base", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="markdown fits a GitHub job summary; json is for tools.")
@click.option("--review-url", metavar="URL", help="Link the Markdown to this review page.")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Compare as built on this backend.")
@PROFILE
@click.option("--offline", is_flag=True, help="Do not look at the remote cache.")
@click.pass_context
def diff(ctx: click.Context, base: str | None, fmt: str, review_url: str | None,
         backend: str | None, profile: str | None, offline: bool) -> int:
    """Frames that differ from the lock at git ref BASE, why, and what is left to pay.

    BASE defaults to the merge-base with the upstream branch, else HEAD."""
    from nbpipe.query.diff import diff_project
    from nbpipe.ui import diff_format

    found = diff_project(_project(ctx, backend, profile), _cache_dir(ctx.obj), base, offline)
    if fmt == "json":
        click.echo(diff_format.diff_json(found))
    elif fmt == "markdown":
        click.echo(diff_format.diff_markdown(found, review_url))
    else:
        click.echo(diff_format.diff_text(found))
    return EXIT_OK


@cli.command()
@click.argument("base", required=False)
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/review"), show_default=True, help="Folder of the page.")
@click.option("--self-contained", is_flag=True, help="One HTML file, thumbnails inline.")
@click.option("--preview", is_flag=True, help="Show frames still to render as the preview "
              "backend's placeholders (drawn locally: free, nothing is pinned).")
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND", help="Compare as built on this backend.")
@PROFILE
@click.option("--offline", is_flag=True, help="Do not look at the remote cache.")
@click.pass_context
def review(ctx: click.Context, base: str | None, out: Path, self_contained: bool, preview: bool,
           backend: str | None, profile: str | None, offline: bool) -> int:
    """A before/after page of the frames that differ from the lock at git ref BASE."""
    from nbpipe.ui.review import write_review

    project = _project(ctx, backend, profile)
    page, count = write_review(project, _cache_dir(ctx.obj), base, out, self_contained, offline,
                               preview)
    click.echo(f"wrote {page} ({count} changed frame{'s' * (count != 1)})")
    return EXIT_OK


@cli.command()
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND")
@PROFILE
@click.pass_context
def push(ctx: click.Context, backend: str | None, profile: str | None) -> int:
    """Send this project's images to the remote cache (`cache.remote`, $NBPIPE_REMOTE)."""
    from nbpipe.ops.push import push_all
    from nbpipe.store.cache import Cache
    from nbpipe.store.gitref import refuse_committed_store
    from nbpipe.store.lock import Lock
    from nbpipe.store.workspace import open_remote

    project = _project(ctx, backend, profile)
    remote = open_remote(project)
    if remote is None:
        raise UsageError("no remote cache is configured",
                         "set `cache: {remote: s3://bucket/prefix}` or NBPIPE_REMOTE")
    with _writing(ctx.obj):
        refuse_committed_store(ctx.obj, _cache_dir(ctx.obj))  # never push forged takes
        cache = Cache(_cache_dir(ctx.obj), create=False)
        try:
            lock = Lock.load(project.loaded.root, project.declared.section)
            sent, present = push_all(project, cache, remote, lock)
        finally:
            cache.close()
    click.echo(f"pushed {sent} image(s) to {remote.url}; {present} were there already")
    return EXIT_OK


@cli.command()
@click.argument("frames", nargs=-1)
@click.option("--backend", type=BACKEND_CHOICE, envvar="NBPIPE_BACKEND")
@PROFILE
@click.pass_context
def pull(ctx: click.Context, frames: tuple[str, ...], backend: str | None,
         profile: str | None) -> int:
    """Write the pinned image of every frame (FRAMES: globs) from the local or remote cache."""
    from nbpipe.ops.push import pull as pull_images
    from nbpipe.store.workspace import open_remote, open_store

    project = _project(ctx, backend, profile)
    with _writing(ctx.obj):
        cache, lock, state = open_store(project, _cache_dir(ctx.obj))
        try:
            lines = pull_images(project, cache, open_remote(project), lock, state,
                                project.select(frames))
            state.save()
        finally:
            cache.close()
    click.echo("\n".join(lines) if lines else "every pinned image is in place")
    return EXIT_FAILED if any(line.startswith("missing") for line in lines) else EXIT_OK


@cli.command()
def schema() -> int:
    """Print the JSON Schema of nbpipe.yaml (for editors)."""
    from nbpipe.manifest.schema import schema_text

    click.echo(schema_text(), nl=False)
    return EXIT_OK


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> int:
    """Start a project here: a commented nbpipe.yaml and a .gitignore for .nbpipe/."""
    from importlib.resources import files

    root: Path = ctx.obj
    manifest = root / "nbpipe.yaml"
    if manifest.exists():
        raise UsageError(f"{manifest} already exists", "edit it, or run init in another directory")
    root.mkdir(parents=True, exist_ok=True)
    manifest.write_text(files("nbpipe").joinpath("data/starter.yaml").read_text("utf-8"), "utf-8")
    ignore = root / ".gitignore"
    lines = ignore.read_text("utf-8").splitlines() if ignore.exists() else []
    if ".nbpipe/" not in lines:
        with ignore.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if lines and lines[-1] else "") + ".nbpipe/\n")
    where = "" if root == Path(".") else f"-C {shlex.quote(str(root))} "
    click.echo(f"wrote {manifest} and {ignore}; next: nbpipe {where}plan")
    return EXIT_OK


def _manifest_label(ctx: click.Context) -> str:
    root: Path = ctx.obj
    return "nbpipe.yaml" if root == Path(".") else os.path.join(root, "nbpipe.yaml")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the one place errors become messages and exit codes."""
    try:
        code = cli.main(args=argv, prog_name="nbpipe", standalone_mode=False)
        return code if isinstance(code, int) else EXIT_OK
    except NbpipeError as exc:
        click.echo(exc.render(), err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # `nbpipe plan | head` is not an error
    except Exception:
        import traceback

        traceback.print_exc()
        click.echo("internal error: this is a bug in nbpipe; please report it", err=True)
        return EXIT_INTERNAL


def entry() -> None:
    """The console script of installs made before nbpipe/launch.py existed (pip writes the
    script once, at install time): the same entry point."""
    from nbpipe.launch import entry as launch

    launch()
