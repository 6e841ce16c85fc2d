"""The commands that share images through the remote cache: push, pull."""

from __future__ import annotations

import click

from nbpipe.cli.shared import Edge, note, target
from nbpipe.errors import EXIT_FAILED, EXIT_OK


@click.command()
@target()
@click.pass_context
def push(ctx: click.Context, backend: str | None, profile: str | None) -> int:
    """Send this project's images to the remote cache (`cache.remote`, $NBPIPE_REMOTE)."""
    from nbpipe.ops.push import push_project

    edge = Edge.of(ctx)
    click.echo(push_project(edge.project(backend, profile), edge.cache_dir(), note,
                            edge.settings))
    return EXIT_OK


@click.command()
@click.argument("frames", nargs=-1)
@target()
@click.pass_context
def pull(ctx: click.Context, frames: tuple[str, ...], backend: str | None,
         profile: str | None) -> int:
    """Write the pinned image of every frame (FRAMES: globs) from the local or remote cache."""
    from nbpipe.ops.push import pull_project

    edge = Edge.of(ctx)
    lines = pull_project(edge.project(backend, profile), edge.cache_dir(), frames, note,
                         edge.settings)
    click.echo("\n".join(lines) if lines else "every pinned image is in place")
    return EXIT_FAILED if any(line.startswith("missing") for line in lines) else EXIT_OK


COMMANDS = (push, pull)
