"""The command line: the group, the one error handler, exit codes (see errors.py).

The commands live in modules by job (building, maintenance, remote, pages, setup); what they
share (the run's Edge, the options spelled once) in shared.py. Heavy modules are imported
inside the commands that need them, so `nbpipe --help` and the no-op build path start fast.
The settings are parsed once, here or by the early path (launch.py), and handed down.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from nbpipe import __version__
from nbpipe.cli import building, maintenance, pages, remote, setup
from nbpipe.cli.shared import Edge
from nbpipe.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    NbpipeError,
)
from nbpipe.launch import Early, project_root
from nbpipe.settings import Settings, using

__all__ = ["cli", "entry", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Run as if nbpipe was started in DIR (default: the nearest folder holding "
              "nbpipe.yaml, here or above, as git finds its repository).", metavar="DIR")
@click.version_option(version=__version__, prog_name="nbpipe")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None) -> None:
    """make for images: render only what changed, never pay twice."""
    early = ctx.obj if isinstance(ctx.obj, Early) else Early()
    settings = early.settings or Settings.from_env()
    ctx.obj = Edge(project_root(directory), settings, early, asked=directory)
    ctx.with_resource(using(settings))  # for code below not handed them (engine, backends)


for _module in (building, maintenance, remote, pages, setup):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None, early: Early | None = None) -> int:
    """Run the CLI; the one place errors become messages and exit codes. `early` is what the
    entry point's early path (launch.py) already found: its settings and no-op verdict."""
    as_json = wants_json(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="nbpipe", standalone_mode=False, obj=early)
        return code if isinstance(code, int) else EXIT_OK
    except NbpipeError as exc:
        click.echo(exc.render(), err=True)
        if as_json and exc.exit_code == EXIT_USAGE:
            click.echo(_error_document(exc))
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        if as_json:
            from nbpipe.ui.failure import error_json

            context = getattr(exc, "ctx", None)
            click.echo(error_json(exc.format_message(), context and
                                  f"`{context.command_path} --help` lists its options"))
        return EXIT_USAGE
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # `nbpipe plan | head` is not an error
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT:
            return _internal()
        click.echo(f"error: {_denied(exc)}", err=True)
        return EXIT_FAILED
    except Exception:
        return _internal()


# What the file system refuses (SECURITY.md, "A read-only project or cache"): the place, not
# nbpipe, is at fault; what was already done (paid, written) is kept.
_ENVIRONMENT = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                          errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG,
                          errno.ELOOP, errno.EMLINK, errno.ETXTBSY, errno.EBUSY, errno.EIO})


def _denied(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else " a file"
    return f"cannot use{where}: {exc.strerror or exc}\nhint: nbpipe writes to the project " \
        "folder and its cache: check that both are writable and have free space"


def _internal() -> int:
    import traceback

    traceback.print_exc()
    click.echo("internal error: this is a bug in nbpipe; please report it", err=True)
    return EXIT_INTERNAL


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON (`--json` before any `--`): then a usage or
    manifest error is also one JSON object on stdout, for the tool reading it."""
    return "--json" in (argv[:argv.index("--")] if "--" in argv else argv)


def _error_document(exc: NbpipeError) -> str:
    from nbpipe.errors import ManifestError
    from nbpipe.ui.failure import error_json, manifest_error_json

    if isinstance(exc, ManifestError):
        return manifest_error_json(exc)
    return error_json(str(exc), getattr(exc, "hint", None))


def entry() -> None:
    """The console script of installs made before nbpipe/launch.py existed (pip writes the
    script once, at install time): the same entry point."""
    from nbpipe.launch import entry as launch

    launch()
