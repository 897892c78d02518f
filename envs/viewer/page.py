"""Build the viewer page: episode records in, one self-contained HTML file out.

The page is the HTML template with the stylesheet, the script and the episodes inlined. The
episodes travel as JSON in a ``<script type="application/json">`` block, with every ``<``, ``>``,
``&``, U+2028 and U+2029 written as a ``\\uXXXX`` escape, so no text a model wrote can end the block
or open a tag; the script renders every string with ``textContent``. The page's Content-Security-
Policy admits only its own stylesheet and script (by hash) and forbids every network request, so
the page works from disk and nothing in it can run or load anything else.

The flags the filters use are computed here, where they are tested:

* ``wrong``: the episode ended with an answer and it is not correct;
* ``cut``: it ended without an answer (a trainer's token budget, ``max_turns``, a timeout, abandoned);
* ``env_error``: an infrastructure fault touched it (never the model's doing);
* ``suspect_reward``: among the episodes that did not succeed, the ``suspects`` highest-reward ones
  whose reward is above the median of those episodes (what a reward hack looks like: paid, yet wrong);
* ``suspect_spam``: the ``suspects`` episodes with the most tool calls, among those with at least
  two and more than the median episode.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.core.records import EpisodeRecord, read_episode_records

DEFAULT_SUSPECTS = 20
FLAGS = ("wrong", "cut", "env_error", "suspect_reward", "suspect_spam")


@dataclass
class LoadedEpisode:
    """A record and the input file it came from."""

    record: EpisodeRecord
    file: int


def load_episodes(paths: Sequence[str | os.PathLike[str]], *, limit: int | None = None) -> list[LoadedEpisode]:
    """Every episode of ``paths`` in file order (at most ``limit`` per file)."""
    loaded: list[LoadedEpisode] = []
    for number, path in enumerate(paths):
        for count, record in enumerate(read_episode_records(path)):
            if limit is not None and count >= limit:
                break
            loaded.append(LoadedEpisode(record, number))
    return loaded


def tool_call_count(record: EpisodeRecord) -> int:
    """Tool calls the model made: the env's ``tool_calls`` metric, else the calls its turns list."""
    if "tool_calls" in record.metrics:
        return int(record.metrics["tool_calls"])
    return sum(len(t.tool_calls) for t in record.turns)


def episode_flags(records: Sequence[EpisodeRecord], suspects: int = DEFAULT_SUSPECTS) -> list[set[str]]:
    """The filter flags of each record (see the module docstring for their definitions)."""
    flags: list[set[str]] = [set() for _ in records]
    for found, record in zip(flags, records, strict=True):
        if record.env_error:
            found.add("env_error")
        if record.unfinished and record.end_reason != "env_server_lost":
            found.add("cut")
        elif record.success is False and not record.unfinished:
            found.add("wrong")
    failed = [i for i, r in enumerate(records) if r.success is False]
    if failed and suspects > 0:
        median = statistics.median(records[i].reward for i in failed)
        ranked = sorted((i for i in failed if records[i].reward > median), key=lambda i: (-records[i].reward, i))
        for i in ranked[:suspects]:
            flags[i].add("suspect_reward")
    calls = [tool_call_count(r) for r in records]
    if calls and suspects > 0:
        median = statistics.median(calls)
        ranked = sorted((i for i, n in enumerate(calls) if n >= 2 and n > median),
                        key=lambda i: (-calls[i], -len(records[i].turns), i))
        for i in ranked[:suspects]:
            flags[i].add("suspect_spam")
    return flags


def summary_rows(episodes: Sequence[LoadedEpisode], flags: Sequence[set[str]], files: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (input file, env): counts, success rate, mean reward, turns, tool calls, components."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, ep in enumerate(episodes):
        groups.setdefault((ep.file, str(ep.record.source.get("env", ""))), []).append(i)
    rows = []
    for (file, env), members in groups.items():
        records = [episodes[i].record for i in members]
        judged = [r.success for r in records if r.success is not None]
        components: dict[str, float] = {}
        for r in records:
            for name, value in r.reward_components.items():
                components[name] = components.get(name, 0.0) + value
        rows.append({
            "file": files[file], "env": env, "kind": str(records[0].source.get("kind", "")), "episodes": len(records),
            "success": sum(judged) / len(judged) if judged else None,
            "reward": statistics.fmean(r.reward for r in records),
            "turns": statistics.fmean(sum(t.action is not None for t in r.turns) for r in records),
            "tool_calls": statistics.fmean(tool_call_count(r) for r in records),
            **{flag: sum(flag in flags[i] for i in members) for flag in FLAGS},
            "components": {name: total / len(records) for name, total in sorted(components.items())},
        })
    return rows


def episode_label(record: EpisodeRecord) -> str:
    """Where the episode came from, in a few words (``item 3 · sample 1``, ``step 40 · group 2``)."""
    source = record.source
    parts = []
    for key, word in (("step", "step"), ("index", "item"), ("sample", "sample"), ("group", "group"), ("seed", "seed"),
                      ("policy", "policy")):
        if source.get(key) is not None:
            parts.append(f"{word} {source[key]}")
    return " · ".join(parts)


class _Strings:
    """Prompt texts stored once (a system prompt repeats in every episode)."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def ref(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def page_data(episodes: Sequence[LoadedEpisode], files: Sequence[str], *, title: str,
              suspects: int = DEFAULT_SUSPECTS) -> dict[str, Any]:
    """What the page's script reads: episodes (prompts interned), their flags, the summary rows."""
    records = [ep.record for ep in episodes]
    flags = episode_flags(records, suspects)
    strings = _Strings()
    out = []
    for number, (ep, found) in enumerate(zip(episodes, flags, strict=True)):
        r = ep.record
        out.append({
            "id": number, "file": ep.file, "kind": str(r.source.get("kind", "")), "env": str(r.source.get("env", "")),
            "label": episode_label(r), "reward": r.reward, "success": r.success, "end": r.end_reason,
            "flags": sorted(found), "tool_calls": tool_call_count(r), "turns_taken": sum(t.action is not None for t in r.turns),
            "prompt": [[m["role"], strings.ref(m["content"])] for m in r.prompt],
            "turns": [{"action": t.action, "observation": t.observation, "reward": t.reward,
                       "components": t.reward_components, "tool_calls": t.tool_calls, "env_error": t.env_error}
                      for t in r.turns],
            "components": r.reward_components, "metrics": r.metrics, "item": r.item, "source": r.source,
            "tokens": r.response_tokens,
        })
    return {"title": title, "files": list(files), "strings": strings.table, "episodes": out,
            "summary": summary_rows(episodes, flags, files), "suspects": suspects}


def embed_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``,
    ``&``, U+2028 or U+2029 appears literally; non-finite numbers become ``null``, lone surrogates U+FFFD."""
    text = json.dumps(_clean(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: UTF-8 cannot hold it
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _asset(name: str) -> str:
    return (Path(__file__).with_name("assets") / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(data: dict[str, Any]) -> str:
    """The whole HTML document for ``page_data``'s output."""
    css, script = _asset("viewer.css"), _asset("viewer.js")
    csp = (f"default-src 'none'; img-src data:; style-src {_csp_hash(css)}; script-src {_csp_hash(script)}; "
           "base-uri 'none'; form-action 'none'")
    values = {"csp": html.escape(csp), "title": html.escape(data["title"]), "css": css, "data": embed_json(data),
              "script": script}
    # one pass over the template: a model's text that happens to read "{{script}}" is data, not a slot
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _asset("viewer.html"))


def build_viewer(paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                 title: str | None = None, suspects: int = DEFAULT_SUSPECTS, limit: int | None = None) -> Path:
    """Read the episodes of ``paths`` and write the viewer page to ``output`` (atomically)."""
    from envs.core.io import atomic_write_text

    files = [str(p) for p in paths]
    episodes = load_episodes(paths, limit=limit)
    data = page_data(episodes, files, title=title or _default_title(files), suspects=suspects)
    return atomic_write_text(output, render_page(data))


def _default_title(files: Iterable[str]) -> str:
    return "Episodes: " + ", ".join(Path(f).parent.name + "/" + Path(f).name for f in files)
