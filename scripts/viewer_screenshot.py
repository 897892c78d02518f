"""Regenerate ``docs/images/viewer.png``: the episode viewer on real episodes, in headless Chromium.

With no FILE, it first evaluates the tiny test model on Arithmetic-v0 (``baselines.evaluate``, CPU,
about a minute) and shows those episodes; give the records of a real run instead, e.g. a learning
run's sampled episodes and its evaluation::

    python scripts/viewer_screenshot.py                                   # the tiny model's evaluation
    python scripts/viewer_screenshot.py runs/RUN/episodes.jsonl runs/RUN/eval/items.jsonl

The page is sorted by turns, with the episode that has the most turns (the first, among equals) open.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs.viewer import build_viewer, load_episodes  # noqa: E402
from envs.viewer.browser import open_page  # noqa: E402

TINY_EVAL = ["--env", "arithmetic-v0", "--model", "tiny", "--samples", "4", "--limit", "16", "--max-new-tokens", "48",
             "--device", "cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="FILE", help="episode records (default: evaluate the tiny model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "viewer.png"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "viewer-screenshot"), help="where the page is written")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    work = Path(args.work)
    files = [Path(os.path.relpath(f)) for f in args.files]
    if not files:
        eval_dir = work / "eval"
        subprocess.run([sys.executable, "-m", "baselines.evaluate", *TINY_EVAL, "--output-dir", str(eval_dir)],
                       cwd=ROOT, check=True)
        files = [Path(os.path.relpath(eval_dir / "items.jsonl"))]
    episodes = load_episodes(files)
    if not episodes:
        raise SystemExit(f"no episodes in {', '.join(map(str, files))}")
    longest = max(range(len(episodes)), key=lambda i: (len(episodes[i].record.turns), -i))
    page = build_viewer(files, work / "episodes.html", title="Episodes: " + ", ".join(f.name for f in files))
    with open_page(page, width=args.width, height=args.height, fragment=f"sort=turns-desc&open={longest}") as view:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=args.out)
        if view.errors:
            raise SystemExit(f"the page reported errors: {view.errors}")
    print(f"wrote {args.out} ({len(episodes)} episodes from {', '.join(map(str, files))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
