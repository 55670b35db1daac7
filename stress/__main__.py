"""`./platform stress [--only NAME] [--json] [--short]`: run the six stress scenarios against the local job
platform and print one row per scenario (docs/stress.md). Exits 1 if any scenario missed an expectation."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback

from stress.report import Result, table
from stress.scenarios import SCENARIOS


def _run(name: str, short: bool) -> Result:
    started = time.perf_counter()
    try:
        result = SCENARIOS[name](short)
    except Exception as exc:  # one broken scenario must not hide the others' rows
        traceback.print_exc(file=sys.stderr)
        result = Result(name, problems=[f"scenario failed: {type(exc).__name__}: {exc}"])
    result.notes.append(f"ran {time.perf_counter() - started:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./platform stress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print only a JSON list, one object per scenario")
    parser.add_argument("--short", action="store_true", help="the test suite's seconds-long forms")
    args = parser.parse_args(argv)
    # SIGTERM as Ctrl-C: unwind, so every scenario stops its processes and drops its databases.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    results: list[Result] = []
    for name in args.only or list(SCENARIOS):
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)  # noqa: T201
        results.append(_run(name, args.short))
    if args.json:
        print(json.dumps([result.as_json() for result in results], indent=2))  # noqa: T201
    else:
        print(table(results))  # noqa: T201
    return 1 if any(result.problems for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
