r"""Command line for the math environments' data and verifier.

    python -m envs.math validate DATASET [--split S] [--limit N] [--answer-format gsm8k]
        check that every gold answer verifies against itself (exit code 1 if some do not)
    python -m envs.math check GOLD RESPONSE
        print the verifier's verdict for one pair, e.g. ``check "\frac12" "so \boxed{0.5}"``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from envs.core.cli import add_logging_argument, cli_entry, program_name, progress, setup_logging

VALIDATE_CHUNK = 256  # gold answers per verify batch (and progress-bar step)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("envs.math"), description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check that every gold answer verifies against itself")
    validate.add_argument("dataset", help="a dataset name (open-rs, math500, ..., sample) or a local file")
    validate.add_argument("--split", default=None)
    validate.add_argument("--limit", type=int, default=None)
    validate.add_argument("--answer-format", choices=["gsm8k"], default=None)
    validate.add_argument("--timeout", type=float, default=5.0, help="seconds per symbolic check")
    add_logging_argument(validate)
    check = sub.add_parser("check", help="verify one response against one gold answer")
    check.add_argument("gold")
    check.add_argument("response")
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", "info"))

    from envs.math.datasets import load_math_items
    from envs.math.verify import MathVerifier, ValidationReport

    if args.command == "check":
        verdict = MathVerifier().verify(args.gold, args.response)
        print(json.dumps(verdict.as_dict(), ensure_ascii=False, indent=2))
        return 0
    items = load_math_items(args.dataset, split=args.split, limit=args.limit, answer_format=args.answer_format)
    verifier, report = MathVerifier(timeout=args.timeout), ValidationReport(total=len(items))
    with progress(total=len(items), desc="validating", unit="answer") as bar:
        for start in range(0, len(items), VALIDATE_CHUNK):
            chunk = verifier.validate(items[start:start + VALIDATE_CHUNK])
            report.failures += [{**failure, "row": failure["row"] + start} for failure in chunk.failures]
            bar.update(chunk.total)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
