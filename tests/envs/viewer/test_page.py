"""The viewer page without a browser: flags, safe embedding, the template, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.records import EpisodeRecord, TurnRecord, append_episode_records
from envs.viewer.page import LoadedEpisode, embed_json, episode_flags, page_data, render_page

ROOT = Path(__file__).resolve().parents[3]


def episode(reward: float, *, acc: float | None = 1.0, end: str = "answer", calls: int = 0, env_error: float = 0.0,
            text: str = "\\boxed{4}") -> EpisodeRecord:
    metrics = {"tool_calls": float(calls), "env_error": env_error, **({} if acc is None else {"acc": acc})}
    if end != "answer":
        metrics["unfinished"] = 1.0
    return EpisodeRecord(prompt=[{"role": "user", "content": "2+2?"}], turns=[TurnRecord(text, "", reward, {"answer": reward})],
                         metrics=metrics, end_reason=end, terminated=end == "answer", truncated=end != "answer")


def test_flags_follow_their_definitions():
    records = [
        episode(1.0),  # 0 correct
        episode(0.1, acc=0.0),  # 1 wrong, at the failed episodes' median reward
        episode(0.1, acc=0.0),  # 2 wrong
        episode(0.9, acc=0.0),  # 3 wrong and paid well: a suspect
        episode(-0.3, acc=0.0, end="budget", calls=12),  # 4 cut after tool spam
        episode(0.0, acc=0.0, end="env_server_lost", env_error=1.0),  # 5 lost to the server: not the model's cut
        episode(0.5, acc=None),  # 6 nothing to judge by
        episode(0.2, acc=0.0, calls=3),  # 7 wrong after a few calls
    ]
    flags = episode_flags(records, suspects=2)
    assert flags[0] == set() and flags[6] == set()
    assert flags[1] == flags[2] == {"wrong"}
    assert flags[3] == {"wrong", "suspect_reward"} and flags[7] == {"wrong", "suspect_reward", "suspect_spam"}
    assert flags[4] == {"cut", "suspect_spam"}
    assert flags[5] == {"env_error"}
    assert episode_flags(records, suspects=0)[3] == {"wrong"}
    # nobody stands out: the same reward for every failure flags none, one tool call each flags none
    same = [episode(0.1, acc=0.0, calls=1) for _ in range(5)]
    assert all(f == {"wrong"} for f in episode_flags(same))


HOSTILE = st.text(alphabet=st.sampled_from(list("<>&/'\"\\ \u2028\u2029\ud800scriptSCRIPT!-{}\x00é😀")), max_size=60)


@settings(max_examples=200, deadline=None)
@given(HOSTILE, HOSTILE)
def test_embedded_json_cannot_end_its_script_block(text, key):
    embedded = embed_json({"a": [text, {key: text}], "n": float("nan")})
    assert not set(embedded) & set("<>&\u2028\u2029")
    decoded = json.loads(embedded)
    clean = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert decoded == {"a": [clean, {key.encode("utf-8", "surrogatepass").decode("utf-8", "replace"): clean}], "n": None}


def test_the_page_admits_only_its_own_style_and_script():
    record = episode(1.0, text="{{script}} </script><script>alert(1)</script> {{css}}")
    page = render_page(page_data([LoadedEpisode(record, 0)], ["in.jsonl"], title="<b>t</b> & {{data}}"))
    assert page.count("<script") == 2 and page.count("</script>") == 2 and page.count("<style>") == 1
    assert "<title>&lt;b&gt;t&lt;/b&gt; &amp; {{data}}</title>" in page  # slots are filled once, from the template
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1).replace("&#x27;", "'")
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    for name, text in (("style-src", style), ("script-src", script)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"{name} 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src" not in csp  # no fetch, no images from anywhere
    data = json.loads(re.search(r'<script type="application/json" id="episode-data">(.*?)</script>', page, re.S).group(1))
    assert data["episodes"][0]["turns"][0]["action"] == record.turns[0].action


def test_prompts_are_stored_once():
    records = [LoadedEpisode(episode(1.0), 0) for _ in range(3)]
    data = page_data(records, ["f"], title="t")
    assert data["strings"] == ["2+2?"] and [e["prompt"] for e in data["episodes"]] == [[["user", 0]]] * 3


def _view(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envs", "view", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_cli_writes_one_file_and_reports_user_errors_in_one_line(tmp_path):
    path = tmp_path / "episodes.jsonl"
    append_episode_records(path, [episode(1.0), episode(0.0, acc=0.0)])
    done = _view(str(path), "-o", str(tmp_path / "out.html"), "--title", "run 7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "<title>run 7</title>" in (tmp_path / "out.html").read_text()
    missing = _view(str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: no such file: {tmp_path / 'nope.jsonl'}"
    (tmp_path / "bad.jsonl").write_text('{"index": 1, "samples": [{"no": "turns"}]}\n')
    bad = _view(str(tmp_path / "bad.jsonl"), cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "bad.jsonl:1" in bad.stderr
