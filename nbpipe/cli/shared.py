"""What every command shares: the run's edge (directory, settings, the early path's findings),
the options spelled once, and opening the project."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from nbpipe.errors import UsageError
from nbpipe.launch import Early, cache_dir
from nbpipe.settings import BACKENDS, LANES, SHARD_WANTS, Settings, Shard, parse_shard

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from nbpipe.engine.noop import Verdict
    from nbpipe.plan.planner import Project

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Edge:
    """The run's context object: the project directory (-C, else found upward), the settings
    parsed once, what the early path (launch.py) found, and the warnings said so far (each once
    per command)."""

    root: Path
    settings: Settings
    early: Early = field(default_factory=Early)
    warned: set[object] = field(default_factory=set)
    asked: Path | None = None  # -C as given; None: `root` was found upward (launch.project_root)
    # --lane, else NBPIPE_LANE: every command that plans frames plans them on it (None: the
    # manifest's lanes). Kept here, not passed along: it changes prices and waits, not images,
    # so no command but those that plan needs to hear of it.
    lane: str | None = None

    @staticmethod
    def of(ctx: click.Context) -> Edge:
        edge = ctx.find_object(Edge)
        if edge is None:  # only a command invoked without the group
            raise click.UsageError("nbpipe commands run under the nbpipe group")
        return edge

    def cache_dir(self) -> Path:
        shared = self.settings.cache_dir
        if shared and os.path.exists(shared) and not os.path.isdir(shared):
            raise UsageError(f"NBPIPE_CACHE_DIR is not a directory: {shared}",
                             "point it at a directory (nbpipe creates it if missing)")
        return cache_dir(self.root, self.settings)

    def verdict(self, backend: str | None, profile: str | None) -> Verdict:
        """The no-op check of a build of every frame: the early path's when it checked this
        very build (so a miss is not checked twice), else run here."""
        from nbpipe.engine.noop import verdict

        folder = self.cache_dir()
        seen = self.early.verdict
        if seen is not None and seen.asked == (str(self.root), str(folder), backend, profile):
            return seen
        return verdict(self.root, folder, backend, profile, self.settings)

    def project(self, backend: str | None = None, profile: str | None = None,
                warn: bool = False, since: dict[str, object] | None = None) -> Project:
        """The loaded project; with `warn`, its warnings (a model shutting down soon) go to
        stderr, each once per command. `since`: the edit path's fingerprint (open_project)."""
        from nbpipe.ops.prices import current_catalog
        from nbpipe.plan.planner import open_project

        if not os.path.isdir(self.root):  # not Path.is_dir: that raises on a name too long
            raise UsageError(f"no such directory: {self.root}")
        project = open_project(self.root, backend, profile, current_catalog(self.cache_dir()),
                               self.lane, since)
        for warning in project.warnings if warn else ():
            if warning not in self.warned:
                self.warned.add(warning)
                click.echo(warning.render(), err=True)
        return project


def note(text: str) -> None:
    """How a command says it waits (for the build lock): on stderr, beside its answer."""
    click.echo(text, err=True)


class Usd(click.ParamType):
    """An amount of US dollars: a finite decimal of 0 or more (NaN would compare false against
    every price, so a NaN cap would let everything through or nothing; an infinite one is no
    cap at all, which is what leaving the option out says)."""

    name = "USD"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> Decimal:
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


def _from_settings(name: str) -> Callable[[click.Context, click.Parameter, str | None],
                                          str | None]:
    """An option's default from the settings (NBPIPE_BACKEND, NBPIPE_PROFILE): a default every
    command honours, so `--backend preview` need not be repeated (and a plain `report` does
    not call every frame stale)."""
    def fill(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        return value if value is not None else getattr(Edge.of(ctx).settings, name)
    return fill


class BackendChoice(click.Choice[str]):
    """--backend's choices: the built-in backends (names.py, free) and those installed packages
    register through the `nbpipe.backends` entry points, read only when a name is not a
    built-in one or the choices are shown (the registry caches them)."""

    def __init__(self) -> None:
        super().__init__(BACKENDS)

    def _every(self) -> None:
        from nbpipe.backends.registry import names

        self.choices = names()

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        if value not in BACKENDS:
            self._every()
        return super().convert(value, param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        self._every()
        return super().get_metavar(param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        self._every()
        return super().shell_complete(ctx, param, incomplete)


def backend_option(help_text: str | None = None) -> Callable[[F], F]:
    """--backend; default: $NBPIPE_BACKEND."""
    return click.option("--backend", type=BackendChoice(), help=help_text,
                        callback=_from_settings("backend"))


PROFILE = click.option("--profile", metavar="NAME", callback=_from_settings("profile"),
                       help="Apply a profile of the manifest (or the built-in 'draft'); "
                       "default: $NBPIPE_PROFILE.")


def _lane(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--lane, else NBPIPE_LANE, kept on the Edge for `Edge.project` (see `Edge.lane`)."""
    edge = Edge.of(ctx)
    edge.lane = value if value is not None else edge.settings.lane


LANE = click.option("--lane", type=click.Choice(LANES), callback=_lane, expose_value=False,
                    help="Send every frame on this lane: standard, batch (half price, within "
                    "24 h) or flex (half price, best effort), where its model takes it; "
                    "default: $NBPIPE_LANE, else the manifest's `lane:`.")


def target(help_text: str | None = None) -> Callable[[F], F]:
    """--backend, --profile and --lane: what the frames are planned as."""
    def apply(command: F) -> F:
        return backend_option(help_text)(PROFILE(LANE(command)))
    return apply


class ShardType(click.ParamType):
    """K/N: the K-th of N shares of the frames (1-based, as Playwright spells it)."""

    name = "K/N"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> Shard:
        if isinstance(value, Shard):
            return value
        shard = parse_shard(str(value))
        if shard is None:
            self.fail(f"{SHARD_WANTS}, not {str(value)!r}", param, ctx)
        return shard


SHARD = click.option("--shard", type=ShardType(), metavar="K/N", callback=_from_settings("shard"),
                     help="Only the K-th of N shares of the frames (1-based; a whole edit chain "
                     "is in one share); default: $NBPIPE_SHARD.")

AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
OFFLINE = click.option("--offline", is_flag=True, help="Do not look at the remote cache.")
