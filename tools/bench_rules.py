"""How rule-file parsing grows with the file: CPU seconds and MB/s for generated files of several sizes.

    python tools/bench_rules.py [--sizes 0.06 0.6 6]

Each file repeats one pattern and one rule (a 2000-line file is about 60 kB). Parsing should grow linearly:
the printed growth per 10x of size should stay near 10x. CPU time, so that other jobs on the machine
count less than in wall time.
"""
from __future__ import annotations

import argparse
import time

from rewriter.dsl.parser import parse_rules

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.06, 0.6, 6.0], help="file sizes in MB")
    args = parser.parse_args()
    parse_rules("pattern warm { a : Relu }", "warm.rules")  # the parser tables are built once per process
    previous = None
    for size in args.sizes:
        count = max(1, int(size * 1e6 / len(BLOCK.format(i=0))))
        text = "".join(BLOCK.format(i=i) for i in range(count))
        start = time.process_time()
        rules = parse_rules(text, "generated.rules")
        cpu = time.process_time() - start
        assert len(rules.rules) == count
        growth = ("" if previous is None
                  else f", {cpu / previous[1]:.1f}x the time for {len(text) / previous[0]:.1f}x the size")
        print(f"{len(text) / 1e6:.2f} MB, {count} rules: {cpu:.2f} CPU-s, {len(text) / 1e6 / cpu:.2f} MB/s{growth}")
        previous = (len(text), cpu)


if __name__ == "__main__":
    main()
