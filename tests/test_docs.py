"""The docs cannot rot: every Python and shell block of README.md and docs/ runs, the site builds strictly,
and every page is in the site's nav.

Each page's Python blocks run in order in one namespace (a fresh interpreter per page); each bash/sh
block runs on its own in ``bash -e -o pipefail``; both from the repository root, with a timeout. A
block is skipped when the line directly before its opening fence is
``<!-- docs-test: skip (why) -->`` (a GPU, a download, a long run); the reason is required.
Blocks in other languages (``text``, ``console``, ``json``, ``yaml``, ...) are not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell"}
SKIP_MARKER = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((?P<why>.+)\)\s*-->$")
BLOCK_TIMEOUT = 300  # seconds: a page's Python blocks together, or one shell block
# Pages whose blocks are not run yet, with why (remove the entry when the reason is gone).
PAGE_SKIPS = {
    "README.md": "the pre-rewrite README (issue 21 item 1); its rewrite makes every block runnable or marked",
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the marker's reason


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file (CommonMark, as markdown-it-py parses it)."""
    from markdown_it import MarkdownIt

    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.map is None:
            continue
        start = token.map[0]
        before = lines[start - 1].strip() if start > 0 else ""
        marker = SKIP_MARKER.match(before)
        if before.startswith("<!-- docs-test") and marker is None:
            raise ValueError(f"{path}:{start}: malformed marker {before!r}; write <!-- docs-test: skip (why) -->")
        lang = (token.info.split() or [""])[0].lower()
        page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        blocks.append(Block(page, start + 1, lang, token.content, marker.group("why") if marker else None))
    return blocks


_PYTHON_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    # padded so tracebacks name the page and its own line numbers
    exec(compile("\\n" * block["line"] + block["code"], block["page"], "exec"), namespace)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTR1_ENV_URL"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1",
               NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n--- stdout\n{done.stdout[-4000:]}\n"
                    f"--- stderr\n{done.stderr[-6000:]}", pytrace=False)


def runnable_pages() -> list[str]:
    """The pages with at least one Python or shell block (run or marked skipped)."""
    return [str(p.relative_to(ROOT)) for p in doc_pages()
            if any(b.lang in PYTHON_LANGS | SHELL_LANGS for b in code_blocks(p))]


@pytest.mark.parametrize("page", runnable_pages())
def test_code_blocks_run(page: str):
    if page in PAGE_SKIPS:
        pytest.skip(PAGE_SKIPS[page])
    blocks = [b for b in code_blocks(ROOT / page) if b.skip is None]
    python = [b for b in blocks if b.lang in PYTHON_LANGS]
    shell = [b for b in blocks if b.lang in SHELL_LANGS]
    if python:
        payload = json.dumps([{"page": b.page, "line": b.line, "code": b.code} for b in python])
        done = subprocess.run([sys.executable, "-c", _PYTHON_RUNNER], input=payload, cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        _check(done, f"the Python blocks of {page} (lines {', '.join(str(b.line) for b in python)})")
    for block in shell:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        _check(done, f"the {block.lang} block at {page}:{block.line}")


def test_skip_markers_are_parsed(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- docs-test: skip (needs a GPU (an H100)) -->\n```bash\nnvidia-smi\n```\n\n"
                    "```python\nx = 1\n```\n\n- in a list:\n\n  ```sh\n  echo hi\n  ```\n\n```text\nnot run\n```\n")
    blocks = code_blocks(page)
    assert [(b.lang, b.skip) for b in blocks] == [("bash", "needs a GPU (an H100)"), ("python", None), ("sh", None),
                                                 ("text", None)]
    assert blocks[1].line == 8 and blocks[2].code == "echo hi\n"
    page.write_text("<!-- docs-test: skip -->\n```bash\nfalse\n```\n")
    with pytest.raises(ValueError, match="malformed marker"):
        code_blocks(page)


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, list):
        return [p for child in node for p in _nav_pages(child)]
    if isinstance(node, dict):
        return [p for child in node.values() for p in _nav_pages(child)]
    return []


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = _nav_pages(config["nav"])
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    missing = sorted(on_disk - set(in_nav))
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"
    dangling = sorted(set(in_nav) - on_disk)
    assert not dangling, f"the nav names pages that do not exist: {dangling}"
    assert len(in_nav) == len(set(in_nav)), "a page appears twice in the nav"


def test_mkdocs_builds_strictly(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    _check(done, "mkdocs build --strict")
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "envs" / "index.html").is_file()
    # the generated page of every env a fresh `import envs` registers (this process may hold test-only ids)
    listed = subprocess.run([sys.executable, "-c", "import envs; print(*(e.env_id for e in envs.suite_envs()))"],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert "AgentR1/HotpotQA-v0" in listed
    for env_id in listed:
        page = tmp_path / "site" / "environments" / env_id.split("/")[-1].lower() / "index.html"
        assert "reward_components" in page.read_text(encoding="utf-8"), env_id
