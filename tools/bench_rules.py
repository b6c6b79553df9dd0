"""How rule-file parsing grows with the file: CPU seconds and MB/s for generated files of several sizes.

    python tools/bench_rules.py [--sizes 0.06 0.6 6] [--syntax-error]

Each file repeats one pattern and one rule (a 2000-line file is about 60 kB). Parsing should grow linearly:
the printed growth per 10x of size should stay near 10x (the time ratio between two sizes, scaled to a
tenfold size step, so that sizes need not be exact powers of ten). CPU time, so that other jobs on the
machine count less than in wall time; the load average is printed beside it because a loaded machine still
slows CPU time a little (shared caches, frequency). With --syntax-error, each file also gets a broken
declaration at its end, and the time is that of reporting the error.
"""
from __future__ import annotations

import argparse
import math
import os
import time

from rewriter.dsl.parser import parse_rules
from rewriter.errors import UserErrors

BLOCK = (
    "pattern p{i} {{\n"
    "    conv : Conv | ConvTranspose | MatMul | Gemm  where const(1) and attr.group == 1\n"
    "    bias : Add  where const(1) or const(0)   optional   # a comment\n"
    "    act  : Relu | PRelu | Sigmoid | Clip      optional\n"
    "    conv -> bias -> act\n"
    "}}\n\n"
    "rule r{i} {{\n"
    "    match p{i}\n"
    "    ignore bias\n"
    "    insert conv.inputs[0, 1], act.outputs\n"
    "}}\n\n"
)
BROKEN = "pattern broken { a : Relu where const(1) == }\n"


def generated_rules(megabytes: float) -> tuple[str, int]:
    """A rule file of about ``megabytes`` MB made of numbered copies of BLOCK, and the number of copies."""
    count = max(1, int(megabytes * 1e6 / len(BLOCK.format(i=0))))
    return "".join(BLOCK.format(i=i) for i in range(count)), count


def growth_per_tenfold(smaller: tuple[int, float], larger: tuple[int, float]) -> float:
    """The time ratio between two (size, seconds) runs, scaled to a 10x size step: 10.0 is linear."""
    size_ratio = larger[0] / smaller[0]
    time_ratio = larger[1] / smaller[1]
    return 10 ** (math.log(time_ratio) / math.log(size_ratio))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.06, 0.6, 6.0], help="file sizes in MB")
    parser.add_argument("--syntax-error", action="store_true",
                        help="end each file with a broken declaration: time the syntax error's report")
    args = parser.parse_args()
    parse_rules("pattern warm { a : Relu }", "warm.rules")  # the parser tables are built once per process
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    previous = None
    for size in args.sizes:
        text, count = generated_rules(size)
        if args.syntax_error:
            text += BROKEN
        start = time.process_time()
        try:
            rules = parse_rules(text, "generated.rules")
        except UserErrors as errors:
            assert args.syntax_error and len(errors.errors) == 1, errors
        else:
            assert not args.syntax_error and len(rules.rules) == count
        cpu = time.process_time() - start
        growth = ""
        if previous is not None:
            growth = f", growth {growth_per_tenfold(previous, (len(text), cpu)):.1f}x per 10x size"
        print(f"{len(text) / 1e6:.2f} MB, {count} rules: {cpu:.2f} CPU-s, {len(text) / 1e6 / cpu:.2f} MB/s{growth}")
        previous = (len(text), cpu)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
