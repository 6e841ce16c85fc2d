"""The commands that keep the store: takes, pin, gc, clean."""

from __future__ import annotations

from pathlib import Path

import click

from nbpipe.cli.shared import AS_JSON, Edge, note, target
from nbpipe.errors import EXIT_FAILED, EXIT_OK, UsageError


@click.command()
@click.argument("frame")
@target()
@click.pass_context
def takes(ctx: click.Context, frame: str, backend: str | None, profile: str | None) -> int:
    """List the takes of FRAME's current request (the pinned one is marked)."""
    from nbpipe.query.inspect import list_takes

    edge = Edge.of(ctx)
    click.echo(list_takes(edge.project(backend, profile), edge.cache_dir(), frame))
    return EXIT_OK


@click.command()
@click.argument("frame")
@click.argument("take")
@target()
@click.option("--force", is_flag=True, help="Overwrite an output modified outside nbpipe.")
@click.pass_context
def pin(ctx: click.Context, frame: str, take: str, backend: str | None, profile: str | None,
        force: bool) -> int:
    """Pin TAKE (a number from `takes`, or a digest prefix) of FRAME; free, from the cache."""
    from nbpipe.query.inspect import pin as pin_take

    edge = Edge.of(ctx)
    click.echo(pin_take(edge.project(backend, profile), edge.cache_dir(), frame, take, force,
                        note))
    return EXIT_OK


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@AS_JSON
@click.pass_context
def which(ctx: click.Context, file: Path, as_json: bool) -> int:
    """Which frame, take, request and model made FILE: found by its bytes in the cache, so a
    copy anywhere answers (the image itself is only read). Exit 1 when the cache does not know
    it."""
    from nbpipe.query.which import file_digest
    from nbpipe.query.which import which as find
    from nbpipe.ui.provenance import which_json, which_text

    digest = file_digest(file)
    found = find(Edge.of(ctx).cache_dir(), digest)
    click.echo((which_json if as_json else which_text)(str(file), digest, found))
    return EXIT_OK if found else EXIT_FAILED


@click.command()
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
    from nbpipe.ops.maintain import collect, collect_remote

    edge = Edge.of(ctx)
    if on_remote:
        if max_size:
            raise UsageError("--max-size applies to the local cache",
                             "use --older-than with --remote")
        lines = collect_remote(edge.project(), refs, older_than, dry_run, edge.settings)
    else:
        lines = collect(edge.root, edge.cache_dir(), max_size, older_than, dry_run, note,
                        edge.settings)
    click.echo("\n".join(lines))
    return EXIT_OK


@click.command()
@click.option("--orphans", is_flag=True, help="Outputs of frames no longer declared.")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@click.pass_context
def clean(ctx: click.Context, orphans: bool, dry_run: bool) -> int:
    """Remove files nbpipe made that nothing declares any more."""
    from nbpipe.ops.maintain import clean as clean_orphans

    if not orphans:
        raise UsageError("say what to clean", "nbpipe clean --orphans")
    edge = Edge.of(ctx)
    click.echo("\n".join(clean_orphans(edge.root, edge.cache_dir(), dry_run, note)))
    return EXIT_OK


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@click.pass_context
def batches(ctx: click.Context, as_json: bool) -> int:
    """The batch jobs builds left open (lane: batch): name, model, frames, state, age, cost."""
    if ctx.invoked_subcommand is not None:
        return EXIT_OK
    from nbpipe.ops.batches import open_jobs
    from nbpipe.ui.batches import jobs_json, jobs_text

    edge = Edge.of(ctx)
    rows = open_jobs(edge.cache_dir(), edge.settings)
    click.echo(jobs_json(rows) if as_json else jobs_text(rows))
    return EXIT_OK


@batches.command("cancel")
@click.argument("name")
@click.pass_context
def cancel_batch(ctx: click.Context, name: str) -> int:
    """Cancel the job NAME (as `nbpipe batches` prints it): its frames fail at the next
    build, which still collects every request the job answered."""
    from nbpipe.ops.batches import cancel
    from nbpipe.ui.batches import jobs_text

    edge = Edge.of(ctx)
    row = cancel(edge.cache_dir(), edge.settings, name)
    click.echo(f"cancelled {row.name}\n" + jobs_text([row]))
    return EXIT_OK


COMMANDS = (takes, pin, which, gc, clean, batches)
