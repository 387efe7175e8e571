"""`python -m bench`: how close Casebook runs to the raw Temporal it stands on.

Starts its own `casebook dev` stack (or uses the one at `--stack-url`), measures the
baseline workflow and every scenario `--repeats` times, prints the figures (medians with
min-max) and the targets as ratios against the baseline, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.casebook_api import put_bench_invoice
from bench.progress import say
from bench.report import as_json, evaluate, figures_table, targets_table, write_json
from bench.results import SCENARIOS, Results
from bench.runner import run_all
from bench.sizes import SIZES
from bench.stack import ManagedStack, Target, external_target

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--stack-url",
        help="a running Casebook API; its Temporal and database come from CASEBOOK_* settings",
    )
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=list(SCENARIOS),
        help="comma-separated scenarios to run (the baseline always runs); default: all",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {', '.join(sorted(unknown))}; known: {SCENARIOS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SIZES[args.size]
    stack = None if args.stack_url else ManagedStack()
    started = datetime.now(UTC)
    results = Results()
    try:
        target = external_target(args.stack_url) if stack is None else _start(stack)
        results = asyncio.run(run_all(target, sizes, args.repeats, args.only))
    finally:
        if stack is not None:
            _stop(stack, keep=bool(results.failed))
    _report(results, args, _meta(args, target, started))
    return 1 if results.failed else 0


def _start(stack: ManagedStack) -> Target:
    say(f"starting casebook dev in {stack.data_dir}")
    target = stack.start()
    put_bench_invoice(target.billing_url, target.billing_token)
    say(f"stack up: API {target.api_url}, Temporal {target.temporal_address}")
    return target


def _stop(stack: ManagedStack, keep: bool) -> None:
    say("stopping the stack")
    stack.stop(keep=keep)
    if keep:
        say(f"a scenario failed: the stack's logs are kept in {stack.data_dir}")


def _report(results: Results, args: argparse.Namespace, meta: dict[str, Any]) -> None:
    print(figures_table(results))
    print()
    print(targets_table(evaluate(results)))
    if args.json:
        write_json(args.json, as_json(results, meta))
        say(f"figures written to {args.json}")
    if results.failed:
        say(f"failed scenarios: {', '.join(results.failed)}")


def _meta(args: argparse.Namespace, target: Target, started: datetime) -> dict[str, Any]:
    return {
        "size": args.size,
        "repeats": args.repeats,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "commit": _commit(),
        "stack": "external " + target.api_url if args.stack_url else "casebook dev (managed)",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            # Set, it makes the worker's sandbox compile workflow modules from source.
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        },
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
