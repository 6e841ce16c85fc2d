"""The commands that show the frames to people: report, diff, review."""

from __future__ import annotations

from pathlib import Path

import click

from nbpipe.cli.shared import OFFLINE, Edge, target
from nbpipe.errors import EXIT_OK


@click.command()
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the page (default: out/index.html; with a profile or a "
              "backend forced, beside its outputs: out/@preview/index.html).")
@target("Report as built on this backend.")
@click.pass_context
def report(ctx: click.Context, out: Path | None, backend: str | None,
           profile: str | None) -> int:
    """A static HTML contact sheet of every frame (thumbnails beside it, relative links)."""
    from nbpipe.ui.report import report_path, write_report

    edge = Edge.of(ctx)
    project = edge.project(backend, profile)
    page = write_report(project, edge.cache_dir(), out or report_path(project))
    click.echo(f"wrote {page}")
    return EXIT_OK


@click.command()
@click.argument("base", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="markdown fits a GitHub job summary; json is for tools.")
@click.option("--review-url", metavar="URL", help="Link the Markdown to this review page.")
@target("Compare as built on this backend.")
@OFFLINE
@click.pass_context
def diff(ctx: click.Context, base: str | None, fmt: str, review_url: str | None,
         backend: str | None, profile: str | None, offline: bool) -> int:
    """Frames that differ from the lock at git ref BASE, why, and what is left to pay.

    BASE defaults to the merge-base with the upstream branch, else HEAD."""
    from nbpipe.query.diff import diff_project
    from nbpipe.ui import diff_format

    edge = Edge.of(ctx)
    found = diff_project(edge.project(backend, profile), edge.cache_dir(), base, offline)
    if fmt == "json":
        click.echo(diff_format.diff_json(found))
    elif fmt == "markdown":
        click.echo(diff_format.diff_markdown(found, review_url))
    else:
        click.echo(diff_format.diff_text(found))
    return EXIT_OK


@click.command()
@click.argument("base", required=False)
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/review"), show_default=True, help="Folder of the page.")
@click.option("--self-contained", is_flag=True, help="One HTML file, thumbnails inline.")
@click.option("--preview", is_flag=True, help="Show frames still to render as the preview "
              "backend's placeholders (drawn locally: free, nothing is pinned).")
@target("Compare as built on this backend.")
@OFFLINE
@click.pass_context
def review(ctx: click.Context, base: str | None, out: Path, self_contained: bool, preview: bool,
           backend: str | None, profile: str | None, offline: bool) -> int:
    """A before/after page of the frames that differ from the lock at git ref BASE."""
    from nbpipe.ui.review import write_review

    edge = Edge.of(ctx)
    page, count = write_review(edge.project(backend, profile), edge.cache_dir(), base, out,
                               self_contained, offline, preview)
    click.echo(f"wrote {page} ({count} changed frame{'s' * (count != 1)})")
    return EXIT_OK


COMMANDS = (report, diff, review)
