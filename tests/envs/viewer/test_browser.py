"""The viewer in a real browser (Debian's headless Chromium through Playwright): every episode, turn and
reward component is on the page, hostile text is shown and never run, filters and search work."""

from __future__ import annotations

import json
import re
import struct

import pytest

import envs
from envs.core.records import EpisodeRecord, TurnRecord, append_episode_records, play_actions
from envs.testing import audit_episodes
from envs.viewer import build_viewer, load_episodes, page_data
from envs.viewer.browser import open_page
from envs.viewer.page import embed_json

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

SCRIPT = "</script><script>window.__pwned = 1; document.title = 'PWNED'</script>"
HOSTILE = (SCRIPT + '<img src=x onerror="window.__pwned = 2"><style>body { display: none }</style><!-- '
           "\u2028\u2029 {{script}} &amp; <b>bold?</b> zqxj-unique-token")
OFFLINE = {e.env_id: e.offline_kwargs for e in envs.suite_envs() if e.offline_kwargs is not None}
TITLE = "viewer test <i>run</i>"

DOM = """() => Array.from(document.querySelectorAll("article.ep")).map((card) => ({
  id: Number(card.dataset.id),
  turns: Array.from(card.querySelectorAll(".turn")).map((t) => {
    const text = (sel) => { const b = t.querySelector(sel); return b ? {text: b.querySelector("pre").textContent,
                            folded: b.dataset.folded === "1"} : null; };
    return {action: text(".msg.assistant > .content"), observation: text(".msg.observation > .content"),
            cut: !!t.querySelector(".msg.cut"),
            chips: Array.from(t.querySelectorAll(".rewards .chip")).map((c) => c.textContent)};
  }),
  metrics: Array.from(card.querySelectorAll(".metrics tr")).map((r) => r.cells[0].textContent),
  components: Array.from(card.querySelectorAll(".components tr")).map((r) => r.cells[0].textContent),
}))"""


def _value(chip: str) -> tuple[str, float]:
    name, _, number = chip.rpartition(" ")
    return name, float(number.replace("\u2212", "-").replace("\u00b1", ""))


@pytest.fixture(scope="module")
def page_files(tmp_path_factory):
    """Three inputs: the reward audit's episodes (real envs, degenerate policies), hostile episodes, and an
    ``items.jsonl`` written before the record format."""
    root = tmp_path_factory.mktemp("viewer")
    audit = [record for env_id in ("AgentR1/Arithmetic-v0", "AgentR1/HotpotQA-v0")
             for *_, record in audit_episodes(env_id, make_kwargs=OFFLINE[env_id])]
    append_episode_records(root / "audit.jsonl", audit)
    import gymnasium as gym

    qa = gym.make("AgentR1/HotpotQA-v0", **OFFLINE["AgentR1/HotpotQA-v0"])
    search = '<tool_call>{"name": "search", "arguments": {"query": "' + SCRIPT.replace('"', "'") + '"}}</tool_call>'
    played = play_actions(qa, [search, HOSTILE + " " + "long line\n" * 400], seed=0, source={"kind": "test", "env": HOSTILE})
    qa.close()
    forged = EpisodeRecord(prompt=[{"role": "system", "content": HOSTILE}, {"role": "user", "content": HOSTILE}],
                           turns=[TurnRecord(HOSTILE, HOSTILE, 0.5, {HOSTILE: 0.5})], metrics={HOSTILE: 1.0, "acc": 0.0},
                           end_reason="answer", terminated=True, item={"question": HOSTILE, HOSTILE: [HOSTILE]},
                           source={"kind": HOSTILE, "env": HOSTILE, "step": HOSTILE})
    append_episode_records(root / "hostile.jsonl", [played, forged])
    legacy = {"index": 0, "item": {"question": "2+2?", "answer": "4"}, "success_metric": "acc",
              "samples": [{"responses": ["\\boxed{4}"], "reward": 1.1, "correct": True, "response_tokens": 5,
                           "metrics": {"acc": 1.0}, "reward_components": {"answer": 1.0, "format": 0.1}}]}
    (root / "items.jsonl").write_text(json.dumps(legacy) + "\n")
    files = [root / "audit.jsonl", root / "hostile.jsonl", root / "items.jsonl"]
    html = build_viewer(files, root / "episodes.html", title=TITLE)
    data = page_data(load_episodes(files), [str(f) for f in files], title=TITLE)
    return html, json.loads(embed_json(data))  # what the page holds: lone surrogates replaced, NaN null


def test_every_episode_turn_and_component_is_rendered(page_files, tmp_path):
    html, data = page_files
    # the page's Content-Security-Policy would stop an injected script: switched off, textContent alone must
    with open_page(html, fragment="size=all&open=all", bypass_csp=True) as page:
        cards = page.evaluate(DOM)
        assert page.evaluate("window.__pwned") is None and page.title() == TITLE
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
        assert page.evaluate("document.scripts.length") == 2 and page.evaluate("document.styleSheets.length") == 1
        texts = page.evaluate("Array.from(document.querySelectorAll('pre')).map((p) => p.textContent)")
        assert texts.count(HOSTILE) >= 4  # the forged episode's prompt, user message, action and observation
        page.screenshot(path=str(tmp_path / "all.png"), full_page=False)
        assert not page.errors, page.errors
    png = (tmp_path / "all.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 900)
    episodes = data["episodes"]
    assert [c["id"] for c in cards] == [e["id"] for e in episodes]
    for card, ep in zip(cards, episodes, strict=True):
        assert len(card["turns"]) == len(ep["turns"]), ep["id"]
        for shown, turn in zip(card["turns"], ep["turns"], strict=True):
            if turn["action"] is None:
                assert shown["cut"] and shown["action"] is None
            else:
                text = shown["action"]["text"]
                assert (turn["action"].startswith(text[:-2]) if shown["action"]["folded"] else text == turn["action"])
            if turn["observation"]:
                text = shown["observation"]["text"]
                assert turn["observation"].startswith(text[:-2]) if shown["observation"]["folded"] else text == turn["observation"]
            chips = dict(_value(c) for c in shown["chips"])
            assert chips.keys() == turn["components"].keys()
            assert all(abs(chips[k] - v) <= 5e-4 for k, v in turn["components"].items())
        assert card["metrics"] == list(ep["metrics"])
        assert card["components"] == [*ep["components"], "total"]


def test_filters_search_folding_and_the_url_state(page_files):
    html, data = page_files
    episodes = data["episodes"]
    wanted = {flag: [e["id"] for e in episodes if flag in e["flags"]] for flag in ("wrong", "suspect_reward", "suspect_spam")}
    assert all(wanted.values())
    with open_page(html) as page:
        shown = "Array.from(document.querySelectorAll('article.ep')).map((c) => Number(c.dataset.id))"
        assert page.evaluate(shown) == [e["id"] for e in episodes[:50]]
        for flag, ids in wanted.items():
            page.click(f"button[data-filter={flag}]")
            assert page.evaluate(shown) == ids[:50], flag
            assert page.inner_text("#count").startswith(f"{len(ids)} of {len(episodes)} episodes")
            assert f"filter={flag}" in page.evaluate("location.hash")
        page.click("button[data-filter=all]")
        page.fill("#search", "ZQXJ-unique-token")  # case-insensitive, over outputs, observations, items
        expect(page.locator("#count")).to_have_text(re.compile(r"^2 of "))
        hostile = page.evaluate(shown)
        assert hostile == [e["id"] for e in episodes if "zqxj-unique-token" in json.dumps(e).lower()]
        assert page.evaluate("document.querySelectorAll('.ep-body').length") == 0
        page.click(f"#ep-{hostile[0]} .ep-head")
        assert page.get_attribute(f"#ep-{hostile[0]} .ep-head", "aria-expanded") == "true"
        action = episodes[hostile[0]]["turns"][1]["action"]
        block = f"#ep-{hostile[0]} .turn[data-turn='1'] .msg.assistant > .content"
        assert page.get_attribute(block, "data-folded") == "1"
        page.click(block + " > button.fold")
        assert page.locator(block + " > pre").text_content() == action
        assert f"open={hostile[0]}" in page.evaluate("location.hash")
        assert page.evaluate("window.__pwned") is None and not page.errors, page.errors
