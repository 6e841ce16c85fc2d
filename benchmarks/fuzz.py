"""A longer run of the manifest and template fuzzers than CI's (same properties, more examples,
a new random seed each run).

    python benchmarks/fuzz.py --examples 20000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    args = parser.parse_args()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/manifest/test_fuzz.py", "tests/manifest/test_templates.py",
         "-k", "never_crash or renders_or_faults", "--hypothesis-show-statistics"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NBPIPE_FUZZ_EXAMPLES": str(args.examples)})
    print(result.stdout[-4000:])
    verdict = "no crash" if result.returncode == 0 else "FAILED"
    print(f"{args.examples:,} examples for each of 3 properties in "
          f"{time.perf_counter() - start:.0f} s: {verdict}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
