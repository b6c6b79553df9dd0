"""Fuzz the rule, spec and config loaders for a time budget, and print the counts.

    PYTHONPATH=. python tools/fuzz_loaders.py --minutes 30 rules spec config

Each loader gets the budget in turn; inputs come in rounds of 200 from a new random seed, so a
long run explores beyond the CI test's fixed examples. A finding (a crash, or an error message
without a file:line) stops the run with hypothesis's shrunk input and a non-zero exit.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_targets import TARGETS, check_loader, mutated, seeds  # noqa: E402

ROUND = 200


def fuzz(name: str, seconds: float) -> Counter[str]:
    """Run loader ``name`` on mutated inputs for ``seconds``; the counts of "ok" and "error" outcomes."""
    load, patterns, suffixes = TARGETS[name]
    counts: Counter[str] = Counter()
    strategy = mutated(seeds(*patterns))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        @seed(random.getrandbits(64))
        @settings(max_examples=ROUND, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(data=strategy)
        def one_round(data: bytes) -> None:
            for suffix in suffixes:
                counts[check_loader(load, data, suffix)] += 1

        one_round()
        counts["rounds"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loaders", nargs="*", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--minutes", type=float, default=1.0, help="time per loader")
    args = parser.parse_args()
    for name in args.loaders:
        start = time.monotonic()
        counts = fuzz(name, args.minutes * 60)
        print(f"{name}: {counts['ok'] + counts['error']} inputs in {time.monotonic() - start:.0f} s "
              f"({counts['ok']} loaded, {counts['error']} refused with a located error), no findings", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
