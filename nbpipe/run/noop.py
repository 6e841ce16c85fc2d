"""The no-op fast path: prove nothing changed since a fully fresh build, without planning.

When the manifest and lock bytes, the build options, the nbpipe version and its model
catalogue, and the stat of every input and output file are what the last all-fresh build
recorded (and no frame's model has come near its shutdown since), every frame is still fresh.
That needs only reading three small files and one stat per file: no YAML, no templates, no graph.
Anything else (a changed byte, a missing file, no state yet) falls through to the full plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from nbpipe import __version__
from nbpipe.store.state import State, stat_of

MANIFEST = "nbpipe.yaml"
LOCK = "nbpipe.lock"
# The model catalogue (nbpipe/catalog.py reads it): an edit of it alone, such as the next
# retirement, must end the fast path though nbpipe's version is the same.
CATALOGUE = Path(__file__).resolve().parent.parent / "data" / "catalog.json"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def fingerprint(root: Path, options: dict, inputs: list[str], outputs: list[str],
                frames: int, until: dt.date | None = None) -> dict:
    """What the next build compares: `outputs` are the paths the lock pins (their stats are in
    the stat cache), `inputs` the project files frames read; from `until` on (a model's
    shutdown draws near) the full path runs, to warn and then refuse."""
    return {"nbpipe": __version__, "catalogue": _sha(CATALOGUE), "options": options,
            "frames": frames, "manifest": _sha(root / MANIFEST), "lock": _sha(root / LOCK),
            "inputs": {rel: list(stat_of(os.path.join(root, rel)) or ()) for rel in inputs},
            "outputs": sorted(outputs), "until": until.isoformat() if until else None}


def _expired(until: object) -> bool:
    if until is None:
        return False
    from nbpipe.catalog import today  # only then: the catalogue costs an import of pydantic

    return not isinstance(until, str) or today().isoformat() >= until


def still_fresh(root: Path, options: dict) -> int | None:
    """The number of frames if provably nothing changed since the last all-fresh build."""
    state = State(root)
    if state.data.get("unpushed"):
        return None  # images still to send to the remote cache: the full path sends them
    fp = state.data.get("fingerprint")
    if not isinstance(fp, dict) or fp.get("nbpipe") != __version__ or fp.get("options") != options:
        return None
    if fp.get("catalogue") != _sha(CATALOGUE):
        return None
    if fp.get("manifest") != _sha(root / MANIFEST) or fp.get("lock") != _sha(root / LOCK):
        return None
    if _expired(fp.get("until")):
        return None
    for rel, recorded in fp.get("inputs", {}).items():
        if list(stat_of(os.path.join(root, rel)) or ()) != recorded:
            return None
    for rel in fp.get("outputs", []):
        known = state.outputs.get(rel)
        if not known or list(stat_of(os.path.join(root, rel)) or ()) != known[:3]:
            return None
    return fp.get("frames")
