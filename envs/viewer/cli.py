"""``python -m envs view FILE [FILE ...] [-o episodes.html]``: write the episode viewer page."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from envs.core.data import DataError
from envs.viewer.page import DEFAULT_SUSPECTS, build_viewer


def add_parser(sub: Any) -> None:
    view = sub.add_parser(
        "view", help="write one self-contained HTML page to read episodes (evaluate, trainer, remote sessions)",
        description="Read episode records (baselines.evaluate's items.jsonl, the GRPO trainer's episodes.jsonl, "
                    "sessions recorded by AgentR1/Remote-v0) and write one HTML file that opens from disk.")
    view.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of episode records or evaluate items")
    view.add_argument("-o", "--output", default="episodes.html", help="the HTML file to write (default: %(default)s)")
    view.add_argument("--title", help="page title (default: the input files)")
    view.add_argument("--suspects", type=int, default=DEFAULT_SUSPECTS,
                      help="how many episodes each reward-hacking-suspect filter flags (default: %(default)s)")
    view.add_argument("--limit", type=int, help="read at most this many episodes from each file")
    view.set_defaults(func=view_command)


def view_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        out = build_viewer(args.files, args.output, title=args.title, suspects=args.suspects, limit=args.limit)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB); open it in a browser: file://{out.resolve()}")
    return 0
