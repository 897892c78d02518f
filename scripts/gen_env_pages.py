"""Write one docs page per registered environment (run by mkdocs-gen-files during ``mkdocs build``).

Each page has the same sections, read from the env itself, so it cannot drift from the code: what it
is (the registry's summary, then the module's and class's docstrings), spaces and turns, tools with
their JSON schemas, reward components with weights and the bounds the contract derives from them,
the metrics a golden episode reports, and the make arguments. ``environments/SUMMARY.md`` lists
the pages for the site's nav (mkdocs-literate-nav).
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import gymnasium as gym
import mkdocs_gen_files

import envs
from envs.core.records import play_actions
from envs.core.registry import accepted_kwargs


def cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def page_name(env_id: str) -> str:
    return env_id.split("/")[-1].lower() + ".md"


def env_class(env_id: str) -> type:
    module, _, name = str(gym.spec(env_id).entry_point).partition(":")
    return getattr(importlib.import_module(module), name)


def env_page(entry: Any) -> str:
    env_id = entry.env_id
    spec = gym.spec(env_id)
    cls = env_class(env_id)
    path = f"{cls.__module__}.{cls.__qualname__}"
    lines = [f"# {env_id}", "", f"*{entry.summary}*" if entry.summary else "", ""]
    module_doc = inspect.getdoc(importlib.import_module(cls.__module__)) or ""
    class_doc = inspect.getdoc(cls) or ""
    lines += [module_doc, ""] + ([class_doc, ""] if class_doc and class_doc not in module_doc else [])
    make_kwargs = dict(entry.offline_kwargs) if entry.offline_kwargs is not None else {}
    env = gym.make(env_id, **make_kwargs)
    base = env.unwrapped
    try:
        lines += ["## At a glance", "", "| property | value |", "|---|---|",
                  f"| id | `{env_id}` |",
                  f"| aliases | {', '.join(f'`{a}`' for a in entry.aliases) or '–'} |",
                  f"| class | `{path}` |",  # plain: an env's module need not be on an API page
                  f"| registered kwargs | `{cell(spec.kwargs)}` |",
                  f"| action space | `{base.action_space}` |",
                  f"| observation space | `{base.observation_space}` |",
                  f"| max turns | {base.max_turns} |",
                  f"| tools | {', '.join(f'`{t}`' for t in base.tools) or 'none'} |",
                  "| runs offline | " + (f"yes: `gym.make(\"{env_id}\", **{cell(entry.offline_kwargs)})` on the shipped sample"
                                        if entry.offline_kwargs is not None else "no: needs its dataset") + " |", ""]
        lines += ["## Episodes", "",
                  "`reset` poses one item; each `step` is one assistant turn. A turn with tool calls runs them and "
                  "their results are the next observation; a turn without tool calls is the final answer, scored, "
                  f"and ends the episode (`terminated`). After {base.max_turns} turn(s) the episode ends `truncated` "
                  "and is scored as unfinished, as is an episode a trainer cuts (`envs.end_unfinished`).", ""]
        if base.tools:
            lines += ["## Tools", "", "| tool | description | parameters |", "|---|---|---|"]
            lines += [f"| `{t.name}` | {cell(t.description)} | `{cell(t.parameters)}` |" for t in base.tools.values()]
            lines.append("")
        process = getattr(base, "active_process_rules", {})
        lines += ["## Rewards", "", "Every step's reward is the sum of these named components "
                  "(`info[\"reward_components\"]`), each value times its weight (`reward_weights=` overrides them).", "",
                  "| component | weight | kind |", "|---|---|---|"]
        lines += [f"| `{name}` | {weight:g} | {'process' if name in process else 'outcome or bookkeeping'} |"
                  for name, weight in base.reward_weights.items()]
        lines += ["", f"Outcome margin {base.outcome_margin_value:g}; process rewards are capped at "
                  f"{base.process_cap:g} per episode; an unfinished episode pays {base.reward_weights.get('unfinished', 0):g}.", ""]
        if entry.offline_kwargs is not None:
            options = {"index": 0} if hasattr(base, "items") else None
            env.reset(seed=0, options=options)
            record = play_actions(env, base.demonstration(), seed=0, options=options)
            lines += ["## A golden episode", "",
                      f"The env's demonstration on item 0 of the shipped sample earns {record.reward:g} "
                      f"in {len(record.turns)} turn(s), with components `{cell(record.reward_components)}`. "
                      "Its final metrics (`info[\"metrics\"]`):", "",
                      "| metric | value |", "|---|---|"]
            lines += [f"| `{k}` | {v:g} |" for k, v in record.metrics.items()]
            lines.append("")
    finally:
        env.close()
    lines += ["## Arguments", "", "Keyword arguments of `gym.make` (the registered kwargs above are applied first).", "",
              "| argument | default |", "|---|---|"]
    for name in accepted_kwargs(cls):
        default = _default(cls, name)
        lines.append(f"| `{name}` | `{cell(default)}` |")
    lines += ["", "## Example", "", "```python", "import gymnasium as gym", "import envs", "",
              f"env = gym.make(\"{env_id}\"" + "".join(f", {k}={v!r}" for k, v in make_kwargs.items()) + ")",
              "obs, info = env.reset(seed=0)",
              "obs, reward, terminated, truncated, info = env.step(model_text)", "```", ""]
    return "\n".join(lines)


def _default(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        param = inspect.signature(init).parameters.get(name)
        if param is not None:
            return "required" if param.default is inspect.Parameter.empty else param.default
    return "?"


summary = []
for entry in envs.suite_envs():
    name = page_name(entry.env_id)
    with mkdocs_gen_files.open(f"environments/{name}", "w") as fh:
        fh.write(env_page(entry))
    summary.append(f"* [{entry.env_id}]({name})")
with mkdocs_gen_files.open("environments/SUMMARY.md", "w") as fh:
    fh.write("\n".join(summary) + "\n")
