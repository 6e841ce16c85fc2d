"""Soak the money state machine (tests/run/money_model.py): fresh seeds, many examples.

    python benchmarks/money_soak.py --examples 2000 --steps 12

Prints the examples run, the steps taken, the complete builds checked, the builds whose spend
was checked against `plan`'s total, and the first invariant
violation found with the steps that led to it, if any. `--shrink` lets hypothesis shrink it to a
smaller reproduction first (minutes with real processes, and a failure that depends on timing
may not fail again on the way: hypothesis then reports it as flaky, with the original error).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from tests.run.money_model import MoneyMachine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--shrink", action="store_true", help="shrink a failure first")
    args = parser.parse_args()
    counts = {"examples": 0, "steps": 0, "complete builds checked": 0,
              "spends checked against plan": 0}

    class Counted(MoneyMachine):
        def __init__(self):
            super().__init__()
            counts["examples"] += 1

        def check_invariants(self, *a, **k):
            counts["steps"] += 1
            return super().check_invariants(*a, **k)

        def teardown(self):
            counts["complete builds checked"] += self.checks
            counts["spends checked against plan"] += self.plans
            super().teardown()
            print(" · ".join(f"{v} {k}" for k, v in counts.items()), flush=True)  # progress

    started = time.monotonic()
    failure = None
    try:
        run_state_machine_as_test(Counted, settings=settings(
            max_examples=args.examples, stateful_step_count=args.steps, deadline=None,
            database=None, suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, *([Phase.shrink] if args.shrink else [])]))
    except Exception as exc:  # noqa: BLE001 - report it, with the counts so far
        failure = exc
    elapsed = time.monotonic() - started
    print(" · ".join(f"{v} {k}" for k, v in counts.items()) + f" · {elapsed:.0f} s")
    if failure is None:
        print("invariant violations: 0")
    else:
        print(f"VIOLATION: {failure!r}")
        for note in getattr(failure, "__notes__", []):
            print(note)
    return 0 if failure is None else 1


if __name__ == "__main__":
    sys.exit(main())
