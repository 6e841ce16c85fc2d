"""A variant's merge patch checked against the JSON prompt it patches.

A key the prompt does not have is most often a typo (`enviroment:`), and merging it would send a
second, contradicting field in a paid request: it is an error unless the key is marked as new
on purpose with a leading `+` (`+lighting: dusk`), which is stripped before the merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nbpipe.manifest.source import Path, did_you_mean

ADD = "+"  # a patch key starting with this adds a key the prompt does not have


@dataclass(frozen=True)
class PatchProblem:
    """A patch key at `path` (inside the patch) the prompt does not have, or set twice."""

    path: Path
    key: str
    twice: bool  # `x` and `+x` both
    hint: str

    def message(self, variant: str, prompt: str) -> str:
        if self.twice:
            return f"variant '{variant}' patches '{self.key}' twice"
        under = ".".join(str(p) for p in self.path[:-1])
        where = f" under '{under}'" if under else ""
        return f"variant '{variant}' patches '{self.key}', which {prompt} does not have{where}"


def checked_patch(prompt: Any, patch: dict[str, Any],
                  problems: list[PatchProblem], at: Path = ()) -> dict[str, Any]:
    """`patch` with its `+` marks stripped; every key the prompt lacks (and is not marked new)
    is appended to `problems`. Below a new or replaced key everything is new: not checked."""
    keys = prompt if isinstance(prompt, dict) else {}
    out: dict[str, Any] = {}
    for key, value in patch.items():
        name, known = key, key in keys
        if not known and key.startswith(ADD) and len(key) > len(ADD):
            name = key[len(ADD):]
        elif not known:
            guess = did_you_mean(key, [str(k) for k in keys])
            problems.append(PatchProblem(
                (*at, key), key, False, f"{guess} (to add a new key on purpose, write "
                f"'{ADD}{key}')" if guess else f"to add it on purpose, write '{ADD}{key}'"))
        if name in out:
            problems.append(PatchProblem((*at, key), name, True,
                                         f"keep either '{name}' or '{ADD}{name}'"))
        nested = known and isinstance(value, dict) and isinstance(keys[key], dict)
        out[name] = checked_patch(keys[key], value, problems, (*at, key)) if nested else value
    return out
