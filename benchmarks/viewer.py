"""The episode viewer on thousands of episodes: file size, build time, and load and interaction times
in headless Chromium (Debian's ``chromium`` through Playwright).

The episodes are real: the reward audit's policies (the golden demonstration, tool spam, repeated
calls, never answering, wrong answers, budget cuts; ``envs.testing.audit_episodes``) played on
Arithmetic-v0, HotpotQA-v0 and Math-v0 with their shipped data, over as many seeds as it takes to
reach ``--episodes``. Printed: the JSONL and HTML sizes, the page build time, then in Chromium the
time from navigation start to the first rendered page, the part of it the browser's own
``JSON.parse`` of the embedded data takes (the raw library the page cannot do without), and the
times to apply a filter, run a search (with the search box's 150 ms typing pause) and expand a page
of 50 episodes.

    python benchmarks/viewer.py [--episodes 5000] [--out runs/bench-viewer]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from playwright.sync_api import expect

import envs
from envs.core.records import append_episode_records
from envs.testing import audit_episodes
from envs.viewer import build_viewer
from envs.viewer.browser import open_page

ENVS = ("AgentR1/Arithmetic-v0", "AgentR1/HotpotQA-v0", "AgentR1/Math-v0")


def write_episodes(path: Path, count: int) -> None:
    """``count`` audit episodes over ``ENVS``, round-robin by seed, appended to ``path`` as they come."""
    offline = {e.env_id: e.offline_kwargs for e in envs.suite_envs()}
    path.unlink(missing_ok=True)
    written = 0
    for seed in itertools.count():
        for env_id in ENVS:
            batch = [record for *_, record in audit_episodes(env_id, make_kwargs=offline[env_id], seeds=(seed,),
                                                             adversarial=())]
            batch = batch[: count - written]
            append_episode_records(path, batch)
            written += len(batch)
            if written >= count:
                return


def timed(action, wait) -> float:
    """Seconds from ``action()`` until ``wait()`` returns."""
    start = time.perf_counter()
    action()
    wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5000)
    parser.add_argument("--out", default="runs/bench-viewer")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl, html = out / "episodes.jsonl", out / "episodes.html"
    start = time.perf_counter()
    write_episodes(jsonl, args.episodes)
    play_s = time.perf_counter() - start
    start = time.perf_counter()
    build_viewer([jsonl], html)
    build_s = time.perf_counter() - start
    with open_page(html) as page:
        load_s, wall_s = page.load_seconds, page.wall_seconds
        render_ms = float(page.evaluate("Number(document.documentElement.dataset.renderMs)"))
        parse_ms = float(page.evaluate("""() => { const t = performance.now();
            JSON.parse(document.getElementById('episode-data').textContent); return performance.now() - t; }"""))
        count = page.locator("#count")
        filter_s = timed(lambda: page.click("button[data-filter=suspect_spam]"),
                         lambda: page.wait_for_selector("button[data-filter=suspect_spam][aria-pressed=true]"))
        page.click("button[data-filter=all]")
        before = count.text_content()
        search_s = timed(lambda: page.fill("#search", "capital"), lambda: expect(count).not_to_have_text(before))
        page.fill("#search", "")
        expect(count).to_have_text(before)
        expand_s = timed(lambda: page.click("#expand-page"),
                         lambda: page.wait_for_selector("#episodes article.ep:nth-child(50) .ep-body", state="attached"))
        errors = page.errors
    episodes = sum(1 for _ in jsonl.open(encoding="utf-8"))
    print(f"episodes: {episodes} (played in {play_s:.1f} s)")
    print("| episodes | JSONL (MB) | HTML (MB) | build (s) | load to first page (s) | of which JSON.parse (s) | "
          "script total (s) | filter (s) | search (s) | expand 50 (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {episodes} | {jsonl.stat().st_size / 1e6:.1f} | {html.stat().st_size / 1e6:.1f} | {build_s:.2f} | "
          f"{load_s:.2f} | {parse_ms / 1000:.2f} | {render_ms / 1000:.2f} | {filter_s:.2f} | {search_s:.2f} | "
          f"{expand_s:.2f} |")
    print(f"HTML / JSONL size: {html.stat().st_size / jsonl.stat().st_size:.2f}x; load as seen by Playwright "
          f"{wall_s:.2f} s; page errors: {len(errors)}")


if __name__ == "__main__":
    main()
