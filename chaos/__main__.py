"""`python -m chaos`: the fault run. Disputes worked by concurrent agents on a `casebook dev`
stack of its own while its worker is SIGKILLed again and again, Temporal is SIGKILLed and
comes back, SMTP dies, billing hangs and the read model's database is locked; then every
case must have reached its end, every breach its escalation, every credit memo exist once
with a balanced ledger, every email be delivered under one Message-ID, and the read model
equal Temporal. Prints the faults and the checks; exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.progress import say
from bench.stack import ManagedStack
from chaos.run import Outcome, run
from chaos.sizes import SIZES

# The run judges what the projection alone leaves behind, then repairs it itself: the API's
# periodic reconciler would hide the difference (it is tested on its own).
STACK_ENV = {"CASEBOOK_RECONCILE_EVERY": "0"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data directory")
    args = parser.parse_args(argv)
    stack = ManagedStack(env=STACK_ENV)
    outcome = Outcome()
    try:
        say(f"chaos: starting casebook dev in {stack.data_dir}")
        target = stack.start()
        outcome = asyncio.run(run(stack, target, SIZES[args.size]))
    finally:
        keep = args.keep or outcome.failed
        stack.stop(keep=keep)
        if keep:
            say(f"chaos: the stack's data and logs are kept in {stack.data_dir}")
    print(table(outcome))
    return 1 if outcome.failed else 0


def table(outcome: Outcome) -> str:
    """The faults injected and the checks, as a plain-text table."""
    lines = ["fault                          at     back after  detail"]
    for f in outcome.faults:
        back = "never" if f.back_after_s is None else f"{f.back_after_s:.1f}s"
        lines.append(f"{f.name:<30} {f.at_s:>5.0f}s {back:>10}  {f.detail}")
    lines += ["", "check                                         result  detail"]
    for c in outcome.checks:
        lines.append(f"{c.name:<45} {'pass' if c.ok else 'FAIL':<7} {c.detail}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
