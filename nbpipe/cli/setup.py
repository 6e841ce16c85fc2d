"""The commands that start a project or describe nbpipe itself: init, schema, models."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from nbpipe.cli.shared import AS_JSON, Edge, backend_option
from nbpipe.errors import EXIT_OK, UsageError


@click.command()
@backend_option("Only this backend's models.")
@AS_JSON
@click.option("--refresh", is_flag=True, help="Fetch HiAPI's public price list into the cache.")
@click.pass_context
def models(ctx: click.Context, backend: str | None, as_json: bool, refresh: bool) -> int:
    """Every model: status and dates, prices per tier (and where they come from), limits."""
    from nbpipe.catalog import builtin, today
    from nbpipe.errors import ManifestError
    from nbpipe.manifest.load import load_manifest
    from nbpipe.ops.prices import current_catalog, models_json, models_table
    from nbpipe.ops.prices import refresh as refresh_prices

    edge = Edge.of(ctx)
    if refresh:
        click.echo(refresh_prices(edge.cache_dir()), err=as_json)
    catalog = current_catalog(edge.cache_dir()) or builtin()
    if (edge.root / "nbpipe.yaml").exists():
        try:  # the manifest's `pricing:` applies even while other parts of it are wrong
            catalog = catalog.with_prices(load_manifest(edge.root).manifest.pricing)
        except ManifestError:
            click.echo("note: nbpipe.yaml does not load; its `pricing:` is not applied", err=True)
    render = models_json if as_json else models_table
    click.echo(render(catalog, backend, today()))
    return EXIT_OK


prices = click.Command("prices", callback=models.callback, params=models.params, hidden=True,
                       help="Alias of `models`.")


@click.command()
def schema() -> int:
    """Print the JSON Schema of nbpipe.yaml (for editors)."""
    from nbpipe.manifest.schema import schema_text

    click.echo(schema_text(), nl=False)
    return EXIT_OK


@click.command()
@click.pass_context
def init(ctx: click.Context) -> int:
    """Start a project here: a commented nbpipe.yaml and a .gitignore for .nbpipe/."""
    from importlib.resources import files

    root = Edge.of(ctx).asked or Path(".")  # here, even inside a project: as `git init`
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


COMMANDS = (models, prices, schema, init)
