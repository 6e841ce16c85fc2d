"""The CI gate's differential property test, run long with fresh seeds.

    python benchmarks/gate_fuzz.py                     # 200 examples, a random seed
    python benchmarks/gate_fuzz.py --examples 1000 --seed 7 --max-steps 16

Each example is a random sequence of edits and builds (tests/engine/test_gate_property.py); after
every step `build` must say `nothing to do` exactly when `plan` says every frame is fresh, and
`build --check` and the no-op fast path must agree with `plan`. Unlike the test, it does not
stop at the first disagreement: it counts examples, steps and disagreements, and prints each
disagreeing sequence. Exit status 1 if any was found.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.engine.test_gate_property import STEPS, run_sequence


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one")
    args = parser.parse_args()
    os.environ.pop("NBPIPE_CACHE_DIR", None)
    chosen = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    counts = {"examples": 0, "steps": 0}
    found: list[tuple[list, list[str]]] = []

    @seed(chosen)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(steps=st.lists(STEPS, min_size=1, max_size=args.max_steps))
    def explore(steps):
        counts["examples"] += 1
        counts["steps"] += len(steps) + 1
        with tempfile.TemporaryDirectory() as temp:
            wrong = run_sequence(Path(temp) / "project", [("build", None), *steps])
        if wrong:
            found.append((steps, wrong))

    started = time.perf_counter()
    explore()
    took = time.perf_counter() - started
    for steps, wrong in found:
        print(f"DISAGREEMENT after {steps}:")
        for line in wrong:
            print(f"  {line}")
    print(f"seed {chosen}: {counts['examples']} examples, {counts['steps']} steps, "
          f"{len(found)} with a disagreement, in {took:.0f} s")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
