"""The episode viewer: ``python -m envs view FILE [FILE ...] -o episodes.html``.

Reads episode records (``envs.core.records``) from ``baselines.evaluate``'s ``items.jsonl``, the GRPO
trainer's ``episodes.jsonl`` and recorded remote sessions, and writes one self-contained HTML page
(no server, no network) to read them: conversations with tool calls and observations set apart,
every turn's reward components, final metrics, a summary table, filters and search.
"""

from envs.viewer.page import DEFAULT_SUSPECTS, build_viewer, episode_flags, load_episodes, page_data, render_page

__all__ = ["DEFAULT_SUSPECTS", "build_viewer", "episode_flags", "load_episodes", "page_data", "render_page"]
