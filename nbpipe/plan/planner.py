"""What a build will do: each selected frame's action, its reason, and what it all costs."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path as FsPath
from typing import Any, Literal, Protocol

from nbpipe.catalog import Catalog, builtin, today
from nbpipe.errors import Diagnostic, ManifestError, UsageError
from nbpipe.filestat import Stat
from nbpipe.manifest.declared import Declared
from nbpipe.manifest.expand import expand, section_name
from nbpipe.manifest.load import Loaded, load_manifest
from nbpipe.manifest.source import did_you_mean
from nbpipe.money import usd
from nbpipe.plan import graph, reach, shards
from nbpipe.plan.frame import Frame, format_of_path
from nbpipe.plan.reasons import Change, changes, short_reason
from nbpipe.plan.resolve import Resolver
from nbpipe.settings import LANES, Shard, current

# What a manifest's `cache.remote` may name: object stores. A folder on this machine (file://,
# a bare path) or another fsspec protocol would let a pull request's manifest write the
# project's images where it likes; only the person running nbpipe names one ($NBPIPE_REMOTE).
REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")

Action = Literal["fresh", "restore", "render", "blocked"]
ACTIONS: tuple[Action, ...] = ("render", "restore", "blocked", "fresh")


@dataclass(frozen=True)
class Project:
    """A loaded project: the declared manifest, the price table in force, the resolved frames,
    and warnings for the user (a model whose shutdown is near)."""

    declared: Declared
    catalog: Catalog
    frames: dict[str, Frame]  # in build order (upstreams first)
    warnings: tuple[Diagnostic, ...] = ()
    # every project file whose bytes went into a key, with its stat from before the read
    # (None: the stat proves nothing, see nbpipe.filestat)
    reads: dict[str, Stat | None] = field(default_factory=dict)
    lane: str | None = None  # `--lane` / NBPIPE_LANE: every frame's lane (None: the manifest's)
    # each frame's shard, by the count of shards (`share`; the frames never change)
    shard_numbers: dict[int, dict[str, int]] = field(default_factory=dict, compare=False,
                                                     repr=False)
    # The edit path (plan/reach.py): targets not planned, their frames as the lock pins them,
    # which the fingerprint `since` proved fresh; a build keeps them and counts them fresh.
    carried: frozenset[str] = frozenset()
    since: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

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

    def share(self, patterns: Sequence[str], shard: Shard | None) -> tuple[list[Frame], int]:
        """The selected frames (`select`) that `shard` builds (all of them with None), and how
        many selected frames other shards build (nbpipe/plan/shards.py says which)."""
        if shard is None:
            return self.select(patterns), 0
        numbers = self.shard_numbers.get(shard.total)
        if numbers is None:  # made once: a build asks twice (its display's total, its walk)
            numbers = self.shard_numbers[shard.total] = shards.numbers(self.frames, shard.total)
        return shards.share(self.frames, self.select(patterns), shard, numbers)

    def _miss_hint(self, pattern: str) -> str | None:
        target = pattern.partition("/")[0]
        own = [n for n, f in self.frames.items() if f.target == target]
        if "/" in pattern and own:
            more = f", ... ({len(own)} in all)" if len(own) > 6 else ""
            return f"frames of '{target}': {', '.join(own[:6])}{more}"
        return did_you_mean(pattern, [*self.frames, *self.targets()])

    @property
    def flags(self) -> str:
        """The flags that select this build (" --profile draft --backend preview"), so a hint
        that names a command names the same build."""
        chosen = (("--profile", self.declared.profile), ("--backend", self.declared.backend),
                  ("--lane", self.lane))
        return "".join(f" {flag} {value}" for flag, value in chosen if value)

    def targets(self) -> list[str]:
        return list(dict.fromkeys(f.target for f in self.frames.values()))


def open_project(root: FsPath, backend: str | None = None, profile: str | None = None,
                 catalog: Catalog | None = None, lane: str | None = None,
                 since: Mapping[str, object] | None = None) -> Project:
    """Load, expand and resolve the manifest in `root` under a profile (None: the default);
    ManifestError lists every problem. `catalog` replaces the built-in prices (a refreshed
    catalogue); the manifest's `pricing:` still overrides it. `lane` (--lane) puts every
    frame on that lane, as `backend` puts it on that backend; unlike a backend it moves no
    output (the images are the same). `since`: the fingerprint of the last complete build,
    when only the manifest changed since (engine/noop.py): the targets the edit cannot reach
    are then carried, not planned (plan/reach.py); the build checks its lock against it."""
    names = builtin().names
    if backend is not None and backend not in names:
        raise UsageError(f"unknown backend '{backend}'",
                         did_you_mean(backend, names) or f"use one of {', '.join(names)}")
    if lane is not None and lane not in LANES:
        raise UsageError(f"unknown lane '{lane}'",
                         did_you_mean(lane, LANES) or f"use one of {', '.join(LANES)}")
    loaded = load_manifest(root, partial=True)
    _check_profile(loaded, profile)
    catalog = (catalog or builtin()).with_prices(loaded.manifest.pricing)
    forced = backend if _overrides(loaded, profile, backend, catalog.default_backend) else None
    section = section_name(profile, forced)
    only = reach.reached(loaded.data, since, section) if not loaded.diags else None
    if only is not None and since is not None:
        try:
            project = _planned(loaded, catalog, profile, forced, backend, lane, only)
        except ManifestError:
            pass  # said as the whole manifest's plan says it, located and complete
        else:
            if reach.carries(loaded.data, only, project.frames.values(), since):
                return replace(project, carried=frozenset(loaded.manifest.targets) - only,
                               since=since)
    return _planned(loaded, catalog, profile, forced, backend, lane, None)


def _planned(loaded: Loaded, catalog: Catalog, profile: str | None, forced: str | None,
             backend: str | None, lane: str | None, only: frozenset[str] | None) -> Project:
    declared = expand(loaded, profile, forced, only)
    declared.diags[:0] = _check_pricing(loaded) + _check_limits(loaded) + \
        _check_profiles(loaded) + _check_remote(loaded)
    uploads = bool(current().remote or loaded.manifest.cache.remote)
    resolver = Resolver(declared, catalog, backend, uploads, today(), lane)
    frames = resolver.resolve()
    by_name = {f.name: f for f in frames}
    order = graph.build_order({f.name: f.upstreams for f in frames})
    return Project(declared, catalog, {name: by_name[name] for name in order},
                   tuple(resolver.warnings), dict(resolver.project.reads), lane)


def _overrides(loaded: Loaded, profile: str | None, backend: str | None, default: str) -> bool:
    """Does `--backend` change any target's backend? If not, the build is the usual one."""
    if backend is None:
        return False
    manifest = loaded.manifest
    chosen = {manifest.defaults.backend or default}
    chosen |= {t.backend for t in manifest.targets.values() if t.backend}
    declared = manifest.profiles.get(profile) if profile else None
    if declared is not None and declared.backend:
        chosen.add(declared.backend)
    return chosen != {backend}


def _check_profile(loaded: Loaded, profile: str | None) -> None:
    declared = loaded.manifest.profiles
    if profile is None or profile in declared or (profile == "draft" and not declared):
        return
    hint = did_you_mean(profile, declared) if declared else \
        "the manifest declares no profiles: the built-in one is 'draft'"
    raise UsageError(f"unknown profile '{profile}'", hint or
                     f"declared profiles: {', '.join(declared)}")


def _check_profiles(loaded: Loaded) -> list[Diagnostic]:
    """A shut-down model in any profile, used by this command or not: the manifest names it."""
    catalog, when, diags = builtin(), today(), []
    for name, profile in loaded.manifest.profiles.items():
        backends = [profile.backend] if profile.backend else catalog.names
        specs = [s for b in backends if profile.model and (s := catalog.get(b, profile.model))]
        news = catalog.news(specs[0], when) if specs else None
        if news is not None and news[0] == "error":
            diags.append(loaded.source.diagnostic(("profiles", name, "model"), news[1], news[2]))
    return diags


def _check_limits(loaded: Loaded) -> list[Diagnostic]:
    names = builtin().names
    return [loaded.source.diagnostic(("limits", backend), f"unknown backend '{backend}'",
                                     did_you_mean(backend, names), at_key=True)
            for backend in loaded.manifest.limits if backend not in names]


def _check_remote(loaded: Loaded) -> list[Diagnostic]:
    remote = loaded.manifest.cache.remote
    scheme = remote.partition("://")[0].lower() if remote and "://" in remote else "file"
    if remote is None or scheme in REMOTE_SCHEMES:
        return []
    return [loaded.source.diagnostic(
        ("cache", "remote"), f"cache.remote may name an object store ({', '.join(REMOTE_SCHEMES)}),"
        f" not '{scheme}'", "a folder on this machine is the runner's choice: NBPIPE_REMOTE=DIR "
        "(or NBPIPE_CACHE_DIR for the local cache)")]


def _check_pricing(loaded: Loaded) -> list[Diagnostic]:
    diags = []
    source = loaded.source
    catalog = builtin()
    for backend, models in loaded.manifest.pricing.items():
        if backend not in catalog.names:
            diags.append(source.diagnostic(("pricing", backend), f"unknown backend '{backend}'",
                                           did_you_mean(backend, catalog.names), at_key=True))
            continue
        for model, price in models.items():
            spec = catalog.get(backend, model)
            path = ("pricing", backend, model)
            if spec is None:
                diags.append(source.diagnostic(
                    path, f"unknown model '{model}' for backend '{backend}'",
                    did_you_mean(model, catalog.models[backend]), at_key=True))
            elif price == {}:
                diags.append(source.diagnostic(
                    path, f"pricing for {model} names no price",
                    f"name its tiers: {', '.join(spec.price_keys)}" if spec.price_keys
                    else "it has one flat price: give a number", at_key=True))
            elif isinstance(price, dict):
                for resolution in price:
                    if resolution not in spec.price_keys:
                        diags.append(source.diagnostic(
                            (*path, resolution), f"{model} has no resolution '{resolution}'",
                            f"its tiers: {', '.join(spec.price_keys)}" if spec.price_keys
                            else "it has one flat price: give a number", at_key=True))
    return diags


class Locked(Protocol):  # read-only members: the store's records are frozen dataclasses
    @property
    def key(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def output(self) -> str: ...


class TakeRef(Protocol):
    @property
    def digest(self) -> str: ...
    @property
    def format(self) -> str: ...


class Known(Protocol):
    """What happened before, as the planner needs it (implemented over store/ by run/)."""

    def locked(self, frame: str) -> Locked | None: ...
    def output_digest(self, output: str) -> str | None: ...
    def has_blob(self, digest: str) -> bool: ...
    def best_take(self, key: str) -> TakeRef | None: ...
    def take_digests(self, key: str) -> set[str]: ...
    def previous_request(self, key: str) -> dict[str, Any] | None: ...
    def kept(self, digest: str) -> bool: ...  # the local cache holds this image
    def orphan(self, output: str) -> str | None: ...  # what nbpipe left there, undeclared


class NothingKnown:
    """No cache, no lock, no outputs: every frame renders."""

    def locked(self, frame: str) -> None:
        return None

    def output_digest(self, output: str) -> None:
        return None

    def has_blob(self, digest: str) -> bool:
        return False

    def best_take(self, key: str) -> None:
        return None

    def take_digests(self, key: str) -> set[str]:
        return set()

    def previous_request(self, key: str) -> None:
        return None

    def kept(self, digest: str) -> bool:
        return False

    def orphan(self, output: str) -> None:
        return None


@dataclass(frozen=True)
class Step:
    """One frame of a plan: what will happen to it, why, and the image it will then hold."""

    frame: Frame
    action: Action
    reason: str
    digest: str | None = None  # the image a fresh or restored frame holds
    changes: tuple[Change, ...] = ()
    output: str | None = None  # where that image is (its extension follows its format)
    same_as: str | None = None  # an earlier frame of this build sends the identical request

    @property
    def cost(self) -> Decimal:
        """What this step spends: a render pays; a blocked frame may pay once unblocked."""
        if self.action == "render" or (self.action == "blocked" and self.frame.key is None):
            return self.frame.cost
        return Decimal(0)


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    shard: Shard | None = None  # planned for this shard (`--shard K/N`) only
    others: int = 0  # selected frames that other shards build, not planned here

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action == action)

    @property
    def cost(self) -> Decimal:
        return sum((s.cost for s in self.steps), Decimal(0))

    def summary(self) -> dict[str, Any]:
        sharded = {"shard": str(self.shard), "other_shards": self.others} if self.shard else {}
        return {"frames": len(self.steps), **{a: self.count(a) for a in ACTIONS},
                "cost_usd": usd(self.cost), **sharded}


def decide(frame: Frame, known: Known, force: bool = False) -> Step:
    """The action for one keyed or unkeyed frame: the single place freshness is defined."""
    if frame.key is None:
        waits = ", ".join(i.ref for i in frame.inputs if i.digest is None)
        return Step(frame, "blocked", f"waits on {waits}")
    locked = known.locked(frame.name)
    same = locked if locked is not None and locked.key == frame.key else None  # pinned this key
    take = None if same is not None else known.best_take(frame.key)
    if same is not None:
        path = frame.output_for(format_of_path(same.output) or "")
    else:
        path = frame.output_for(take.format) if take else frame.output
    current = known.output_digest(path)
    if not output_is_ours(path, current, locked.digest if locked else None, frame.key, known) \
            and not force:
        why = "output modified outside nbpipe" if locked \
            else "a file not made by nbpipe is in the way"
        return Step(frame, "blocked", f"{why} (--force overwrites)", output=path)
    if force:
        return Step(frame, "render", "forced (a new take)")
    if same is not None:
        if current == same.digest:
            return Step(frame, "fresh", "up to date", same.digest, output=path)
        # The lock may come from a pull request: it restores only an image the cache knows
        # was rendered for this very key, never another frame's.
        if same.digest in known.take_digests(frame.key) and known.has_blob(same.digest):
            return Step(frame, "restore", "output missing", same.digest, output=path)
        take = known.best_take(frame.key)
        if take is not None:
            return Step(frame, "restore", "output missing; the pinned image is not a take of "
                        "this frame's key", take.digest, output=frame.output_for(take.format))
        return Step(frame, "render", "output missing and not in the cache")
    found = _changes(frame, locked, known)
    reason = "new frame" if locked is None else short_reason(found)
    if take is not None:
        if take.digest == current:
            return Step(frame, "fresh", "output already holds a take of this key", take.digest,
                        output=path)
        return Step(frame, "restore", reason, take.digest, tuple(found), output=path)
    return Step(frame, "render", reason, None, tuple(found))


def output_is_ours(path: str, current: str | None, pinned: str | None, key: str,
                   known: Known) -> bool:
    """May nbpipe replace the file at a frame's output `path` (digest `current`, None if
    missing)? Yes when it holds the pinned image or a take of the frame's key; any image the
    cache keeps (a build killed before it saved the lock wrote it: replacing it loses nothing);
    or what nbpipe left there when the frame was no longer declared. Anything else was made
    outside nbpipe and is never overwritten without --force."""
    return current is None or current == pinned or current in known.take_digests(key) \
        or known.kept(current) or current == known.orphan(path)


def _changes(frame: Frame, locked: Locked | None, known: Known) -> list[Change]:
    if locked is None:
        return []
    previous = known.previous_request(locked.key)
    if previous is None:
        return [Change("request changed", ("the previous request is not in the cache; "
                                           "the frame key differs from nbpipe.lock",))]
    return changes(frame, previous)


def make_plan(frames: Iterable[Frame], known: Known | None = None,
              force: Callable[[Frame], bool] = lambda f: False) -> Plan:
    """Decide every frame in build order; an edit's key uses its upstream's planned image."""
    known = known or NothingKnown()
    digests: dict[str, str] = {}
    rendering: dict[str, str] = {}  # key → the frame that sends it: identical requests go once
    steps = []
    for frame in frames:
        if frame.upstreams:
            frame = frame.keyed(digests)
        step = decide(frame, known, force(frame))
        key = frame.key  # a render always has one
        if step.action == "render" and key is not None:
            if key in rendering:
                step = Step(frame, "restore", f"same request as {rendering[key]}",
                            same_as=rendering[key])
            else:
                rendering[key] = frame.name
        if step.digest is not None:
            digests[frame.name] = step.digest
        steps.append(step)
    return Plan(steps)

