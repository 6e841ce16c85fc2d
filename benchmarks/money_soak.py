"""Soak the money state machine (tests/engine/money_model.py): fresh seeds, many examples.

    python benchmarks/money_soak.py --examples 2000 --steps 12
    python benchmarks/money_soak.py --machine remote --minutes 15   # + a shared S3, 2 clones
    python benchmarks/money_soak.py --machine batch --minutes 10    # the Gemini batch lane
    python benchmarks/money_soak.py --seed 1234567   # the draws of a run that printed that seed

It prints the seed it drew first (batch i of a --minutes run uses seed + i): a violation can be
drawn again with --seed (real processes race, so a timing-bound one may not recur).

Prints the examples run, the steps taken, the complete builds checked, the builds whose spend
was checked against `plan`'s total, the Σ reported = Σ billed checks, and the first invariant
violation found with the steps that led to it, if any. `--shrink` lets hypothesis shrink it to a
smaller reproduction first (minutes with real processes, and a failure that depends on timing
may not fail again on the way: hypothesis then reports it as flaky, with the original error).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis.stateful import run_state_machine_as_test

MACHINES = {"local": "tests.engine.money_model:MoneyMachine",
            "remote": "tests.engine.money_remote_model:RemoteMoneyMachine",
            "batch": "tests.engine.money_batch_model:BatchMoneyMachine"}


def machine(name: str) -> type:
    import importlib

    module, _, cls = MACHINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--machine", choices=sorted(MACHINES), default="local",
                        help="remote: with a loopback S3 remote and a second clone; batch: the "
                        "Gemini batch lane")
    parser.add_argument("--minutes", type=float, default=None,
                        help="run batches of --batch examples, each with a fresh seed, until "
                        "this long has passed (or --examples are done)")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--shrink", action="store_true", help="shrink a failure first")
    parser.add_argument("--verbose", action="store_true", help="print every step")
    parser.add_argument("--warm", action="store_true", help="every build a warm server's child "
                        "(NBPIPE_WARM=1, one server an example): the local machine only")
    parser.add_argument("--seed", type=int, default=None,
                        help="draw as the run that printed this seed did (default: a fresh one)")
    args = parser.parse_args()
    if args.warm:
        os.environ["MONEY_WARM"] = "1"
    drawn = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    print(f"seed {drawn} (again: --seed {drawn})", flush=True)
    counts = {"examples": 0, "steps": 0, "complete builds checked": 0,
              "spends checked against plan": 0, "reported = billed checks": 0}
    if args.machine == "remote":
        counts["remote checks (settled)"] = 0
    started = time.monotonic()
    failures: list = []  # (exception, what the example did), before hypothesis replays it

    class Counted(machine(args.machine)):
        def __init__(self):
            super().__init__()
            counts["examples"] += 1

        def check_invariants(self, *a, **k):
            counts["steps"] += 1
            return super().check_invariants(*a, **k)

        def teardown(self):
            if isinstance(sys.exc_info()[1], Exception) and not failures:  # the first failure
                failures.append((sys.exc_info()[1], list(getattr(self, "trace", []))))
            counts["complete builds checked"] += self.checks
            counts["spends checked against plan"] += self.plans
            counts["reported = billed checks"] += self.tallies
            if "remote checks (settled)" in counts:
                counts["remote checks (settled)"] += self.remote_checks
            super().teardown()
            print(" · ".join(f"{v} {k}" for k, v in counts.items()), flush=True)  # progress

    failure = None
    left, batches = args.examples, 0
    while left > 0 and failure is None:
        batch = min(left, args.batch) if args.minutes else left
        seed(drawn + batches)(Counted)  # a fresh draw per batch, each named by the seed
        batches += 1
        try:
            run_state_machine_as_test(Counted, settings=settings(
                max_examples=batch, stateful_step_count=args.steps, deadline=None,
                database=None, suppress_health_check=list(HealthCheck),
                phases=[Phase.generate, *([Phase.shrink] if args.shrink else [])],
                verbosity=Verbosity.verbose if args.verbose else Verbosity.normal))
        except Exception as exc:
            failure = exc
        left -= batch
        if args.minutes and time.monotonic() - started > args.minutes * 60:
            break
    elapsed = time.monotonic() - started
    print(" · ".join(f"{v} {k}" for k, v in counts.items()) + f" · {elapsed:.0f} s · seed {drawn}")
    if failure is None:
        print("invariant violations: 0")
    else:
        print(f"VIOLATION: {failure!r}")
        for note in getattr(failure, "__notes__", []):
            print(note)
        for exc, trace in failures[:1]:
            print(f"first failing example: {exc!r}", *trace, sep="\n  ")
    return 0 if failure is None else 1


if __name__ == "__main__":
    sys.exit(main())
