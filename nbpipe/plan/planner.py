"""What a build will do: each selected frame's action, its reason, and what it all costs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path as FsPath
from typing import Literal

from nbpipe.catalog import BACKENDS, BUILTIN, FLAT, Catalog
from nbpipe.errors import Diagnostic, UsageError
from nbpipe.manifest.expand import Declared, expand
from nbpipe.manifest.load import Loaded, load_manifest
from nbpipe.manifest.source import did_you_mean
from nbpipe.plan import graph
from nbpipe.plan.frame import Frame
from nbpipe.plan.resolve import Resolver

Action = Literal["fresh", "restore", "render", "blocked"]
ACTIONS: tuple[Action, ...] = ("render", "restore", "blocked", "fresh")


@dataclass(frozen=True)
class Project:
    """A loaded project: the declared manifest, the price table in force, the resolved frames."""

    declared: Declared
    catalog: Catalog
    frames: dict[str, Frame]  # in build order (upstreams first)

    @property
    def loaded(self) -> Loaded:
        return self.declared.loaded

    def dependencies(self) -> dict[str, tuple[str, ...]]:
        return {name: frame.upstreams for name, frame in self.frames.items()}

    def select(self, patterns: Sequence[str]) -> list[Frame]:
        """Frames matching the globs (or target names), plus everything they depend on."""
        if not patterns:
            return list(self.frames.values())
        chosen: set[str] = set()
        for pattern in patterns:
            hits = [n for n, f in self.frames.items()
                    if fnmatch.fnmatchcase(n, pattern) or f.target == pattern]
            if not hits:
                raise UsageError(f"no frame matches '{pattern}'", self._miss_hint(pattern))
            chosen.update(hits)
        wanted = graph.closure(self.dependencies(), chosen)
        return [f for n, f in self.frames.items() if n in wanted]

    def _miss_hint(self, pattern: str) -> str | None:
        target = pattern.partition("/")[0]
        own = [n for n, f in self.frames.items() if f.target == target]
        if "/" in pattern and own:
            more = f", ... ({len(own)} in all)" if len(own) > 6 else ""
            return f"frames of '{target}': {', '.join(own[:6])}{more}"
        return did_you_mean(pattern, [*self.frames, *self.targets()])

    def targets(self) -> list[str]:
        return list(dict.fromkeys(f.target for f in self.frames.values()))


def open_project(root: FsPath, backend: str | None = None) -> Project:
    """Load, expand and resolve the manifest in `root`; ManifestError lists every problem."""
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'",
                         did_you_mean(backend, BACKENDS) or f"use one of {', '.join(BACKENDS)}")
    loaded = load_manifest(root)
    declared = expand(loaded)
    declared.diags[:0] = _check_pricing(loaded)
    catalog = BUILTIN.with_prices(loaded.manifest.pricing)
    frames = Resolver(declared, catalog, backend).resolve()
    by_name = {f.name: f for f in frames}
    order = graph.build_order({f.name: f.upstreams for f in frames})
    return Project(declared, catalog, {name: by_name[name] for name in order})


def _check_pricing(loaded: Loaded) -> list[Diagnostic]:
    diags = []
    source = loaded.source
    for backend, models in loaded.manifest.pricing.items():
        if backend not in BACKENDS:
            diags.append(source.diagnostic(("pricing", backend), f"unknown backend '{backend}'",
                                           did_you_mean(backend, BACKENDS), at_key=True))
            continue
        for model, price in models.items():
            spec = BUILTIN.get(backend, model)
            path = ("pricing", backend, model)
            if spec is None:
                diags.append(source.diagnostic(path, f"unknown model '{model}' for backend "
                                               f"'{backend}'", did_you_mean(model, BUILTIN.models[backend]),
                                               at_key=True))
            elif isinstance(price, dict):
                for resolution in price:
                    if resolution not in spec.resolutions:
                        diags.append(source.diagnostic(
                            (*path, resolution), f"{model} has no resolution '{resolution}'",
                            f"its tiers: {', '.join(spec.resolutions)}" if spec.resolutions
                            else "it has one flat price: give a number", at_key=True))
    return diags


@dataclass(frozen=True)
class Step:
    """One frame of a plan: what will happen to it and why."""

    frame: Frame
    action: Action
    reason: str

    @property
    def cost(self) -> Decimal:
        """What this step spends: a render pays; a blocked frame will pay once unblocked."""
        return self.frame.cost if self.action in ("render", "blocked") else Decimal(0)


@dataclass(frozen=True)
class Plan:
    steps: list[Step]

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action == action)

    @property
    def cost(self) -> Decimal:
        return sum((s.cost for s in self.steps), Decimal(0))

    def summary(self) -> dict:
        return {"frames": len(self.steps), **{a: self.count(a) for a in ACTIONS},
                "cost_usd": usd(self.cost)}


def make_plan(frames: Iterable[Frame]) -> Plan:
    """With no cache or lock yet, every keyed frame renders; an edit waits for its upstream."""
    steps = []
    for frame in frames:
        if frame.key is None:
            waits = ", ".join(i.ref for i in frame.inputs if i.digest is None)
            steps.append(Step(frame, "blocked", f"waits on {waits}"))
        else:
            steps.append(Step(frame, "render", "new frame"))
    return Plan(steps)


def usd(amount: Decimal) -> float:
    """A JSON-friendly dollar figure (Decimal sums stay exact until here)."""
    return float(round(amount, 6))


def price_label(catalog: Catalog, frame: Frame) -> str:
    spec = catalog.get(frame.backend, frame.model)
    flat = spec is not None and FLAT in spec.prices
    return frame.model if flat else f"{frame.model} {frame.params.get('resolution', '')}".strip()
