"""Run the benchmark suites and print one table: ``python -m bench [--quick] [SUITE …]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from bench import Row, format_table


def main() -> int:
    suites = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="SUITE",
        help="which suites (default: all): " + ", ".join(suites),
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(suites))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(suites)}")
    rows: list[Row] = []
    for name in args.suites or suites:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"# {name} …", file=sys.stderr, flush=True)
        rows.extend(module.run(quick=args.quick))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
