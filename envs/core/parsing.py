"""Parsing model text: tool calls (Hermes JSON and short tags), final answers, think blocks.

Every function here is total: any string in, a well-formed result out, never an exception. Errors
in the model's text come back as ``ParseError`` values so the environment can turn them into an
observation and a named penalty.
"""

from __future__ import annotations

import bisect
import json
import re
import textwrap
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

_THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ToolCall:
    """One parsed request to run a tool."""

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    form: str = "json"  # "json" (Hermes <tool_call>), "tag" (<search>...</search>) or "fence" (```python ...```)

    def key(self) -> str:
        """A canonical string for spotting repeated calls."""
        return self.name + "\x00" + json.dumps(self.arguments, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class ParseError:
    """A tool-call attempt that could not be understood."""

    kind: str  # "malformed_json" | "missing_name" | "bad_arguments" | "unclosed_tag" | "unclosed_fence"
    message: str
    raw: str = ""


@dataclass
class ParsedTurn:
    """What one assistant turn asked for."""

    text: str
    body: str  # the text outside the reasoning block, where actions are read
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)

    @property
    def attempted_tool_use(self) -> bool:
        return bool(self.tool_calls or self.errors)


def strip_reasoning(text: str) -> str:
    """The part of ``text`` after the last ``</think>``; the whole text if there is none.

    R1-style models often *mention* tags while thinking; only what follows the reasoning counts.
    """
    idx = text.rfind(_THINK_CLOSE)
    return text if idx < 0 else text[idx + len(_THINK_CLOSE):]


def parse_turn(text: str, *, tag_tools: Mapping[str, str] | None = None, json_tools: bool = True,
               max_calls: int = 8, fence_tools: Mapping[str, str] | None = None) -> ParsedTurn:
    """Parse one assistant turn.

    ``tag_tools`` maps a tag name to the argument it fills, e.g. ``{"search": "query"}`` makes
    ``<search>x</search>`` the call ``search(query="x")``; ``fence_tools`` maps a fence language to the
    argument it fills, e.g. ``{"python": "code"}`` makes a ```` ```python ```` block the call
    ``python(code=...)``. Calls and errors come in text order; those beyond the first ``max_calls``
    are dropped. A tag or fenced call inside a ``<tool_call>`` is not a call.
    """
    body = strip_reasoning(text)
    found: list[tuple[int, ToolCall | ParseError]] = []
    json_spans: list[tuple[int, int]] = []
    if json_tools:
        json_spans = _parse_json_calls(body, found)
    for tag, argument in (tag_tools or {}).items():
        _parse_tag_calls(body, tag, argument, found, json_spans)
    for language, argument in (fence_tools or {}).items():
        _parse_fenced_calls(body, language, argument, found, json_spans)
    # Text order, and at most ``max_calls`` attempts (calls and errors alike): one turn's penalties
    # and its work are bounded however many tags the model writes.
    found.sort(key=lambda pair: pair[0])
    turn = ParsedTurn(text=text, body=body)
    for _, parsed in found[:max_calls]:
        (turn.tool_calls if isinstance(parsed, ToolCall) else turn.errors).append(parsed)
    return turn


def tag_spans(text: str, tag: str) -> tuple[list[tuple[int, int]], bool]:
    """``(start, end)`` of the content of each complete ``<tag>...</tag>``, and whether an opening tag
    was left unclosed. Non-nesting, first-close matching, linear time (no regex backtracking)."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        start = text.find(opening, pos)
        if start < 0:
            return spans, False
        end = text.find(closing, start + len(opening))
        if end < 0:
            return spans, True
        spans.append((start + len(opening), end))
        pos = end + len(closing)


def _parse_json_calls(body: str, found: list[tuple[int, ToolCall | ParseError]]) -> list[tuple[int, int]]:
    spans, unclosed = tag_spans(body, "tool_call")
    for start, end in spans:
        found.append((start, _decode_json_call(body[start:end])))
    if unclosed:
        where = body.find("<tool_call>", spans[-1][1] + 1 if spans else 0) + len("<tool_call>")
        found.append((where, ParseError("unclosed_tag", "<tool_call> has no matching </tool_call>", body[-200:])))
    return spans


# Deepest nesting accepted in a call's arguments. Deeper values are no tool's input, and they break
# code that recurses over them (``pickle`` in AsyncVectorEnv's workers, ``json.dumps``, deepcopy).
MAX_ARGUMENT_DEPTH = 32


def _decode_json_call(raw: str) -> ToolCall | ParseError:
    try:
        payload = json.loads(raw.strip())
    except (ValueError, RecursionError) as exc:
        return ParseError("malformed_json", f"tool call is not valid JSON: {exc}", raw[:200])
    if not isinstance(payload, dict):
        return ParseError("malformed_json", "tool call must be a JSON object", raw[:200])
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        return ParseError("missing_name", 'tool call needs a string "name"', raw[:200])
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return ParseError("bad_arguments", '"arguments" is a string that is not JSON', raw[:200])
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ParseError("bad_arguments", '"arguments" must be a JSON object', raw[:200])
    if _nesting_depth(arguments) > MAX_ARGUMENT_DEPTH:
        return ParseError("bad_arguments", f'"arguments" are nested more than {MAX_ARGUMENT_DEPTH} levels deep', raw[:200])
    return ToolCall(name.strip(), arguments, raw=raw, form="json")


def _nesting_depth(value: Any) -> int:
    """Depth of nested lists/dicts in a decoded JSON value, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_ARGUMENT_DEPTH:
                stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _parse_tag_calls(body: str, tag: str, argument: str, found: list[tuple[int, ToolCall | ParseError]],
                     skip: list[tuple[int, int]]) -> None:
    opening = f"<{tag}>"
    spans, unclosed = tag_spans(body, tag)
    inside = _SpanIndex(skip)
    for start, end in spans:
        if not inside(start - len(opening)):
            found.append((start, ToolCall(tag, {argument: body[start:end].strip()}, raw=body[start:end], form="tag")))
    if unclosed:
        where = body.find(opening, spans[-1][1] + 1 if spans else 0)
        if not inside(where):
            found.append((where + len(opening), ParseError("unclosed_tag", f"<{tag}> has no matching </{tag}>", body[-200:])))


def fence_spans(text: str, language: str) -> tuple[list[tuple[int, int, int]], int | None]:
    """``(opening, content start, content end)`` of each complete ```` ```language ```` block, and where
    an unclosed one opens (``None`` if none is). The opening fence may end a line of prose (as ToRL
    reads it) but nothing may follow the language on its line; the closing fence starts a line
    (after indentation). Linear time."""
    opening = "```" + language
    spans: list[tuple[int, int, int]] = []
    pos = 0
    while True:
        start = text.find(opening, pos)
        if start < 0:
            return spans, None
        after = start + len(opening)
        line_end = text.find("\n", after)
        if text[after:len(text) if line_end < 0 else line_end].strip():  # ```python3, ```pythonic, ```python x
            pos = after
            continue
        if line_end < 0:
            return spans, start
        close = _closing_fence(text, line_end + 1)
        if close is None:
            return spans, start
        spans.append((start, line_end + 1, close))
        pos = close + 3


def _closing_fence(text: str, begin: int) -> int | None:
    """The first ```` ``` ```` at or after ``begin`` with only blanks before it on its line."""
    line_start, pos = begin, begin
    while True:
        hit = text.find("```", pos)
        if hit < 0:
            return None
        newline = text.rfind("\n", pos, hit)  # searched only since the last hit: linear overall
        if newline >= 0:
            line_start = newline + 1
        if not text[line_start:hit].strip():
            return hit
        pos = hit + 3


def _parse_fenced_calls(body: str, language: str, argument: str, found: list[tuple[int, ToolCall | ParseError]],
                        skip: list[tuple[int, int]]) -> None:
    spans, unclosed = fence_spans(body, language)
    inside = _SpanIndex(skip)
    for start, content_start, content_end in spans:
        if not inside(start):
            code = textwrap.dedent(body[content_start:content_end]).rstrip()
            found.append((start, ToolCall(language, {argument: code}, raw=body[start:content_end + 3], form="fence")))
    if unclosed is not None and not inside(unclosed):
        found.append((unclosed, ParseError("unclosed_fence", f"the ```{language} block is not closed with ```",
                                           body[unclosed:unclosed + 200])))


class _SpanIndex:
    """Is a position inside one of some sorted, disjoint spans? (Binary search, so linear overall.)"""

    def __init__(self, spans: list[tuple[int, int]]):
        self._starts = [s for s, _ in spans]
        self._spans = spans

    def __call__(self, pos: int) -> bool:
        i = bisect.bisect_right(self._starts, pos) - 1
        return i >= 0 and self._spans[i][0] <= pos < self._spans[i][1]


def extract_tag(text: str, tag: str) -> str | None:
    """Content of the last complete ``<tag>...</tag>`` in ``text`` (stripped), or ``None``."""
    spans, _ = tag_spans(text, tag)
    return text[spans[-1][0]:spans[-1][1]].strip() if spans else None


def extract_last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with balanced braces, or ``None``.

    Only the last complete box counts: several boxes are not merged into a set. Linear time: braces
    are paired in one pass, so adversarial nesting cannot make it slow.
    """
    closing = _pair_braces(text)
    best: tuple[int, int] | None = None  # matches come in text order: the last usable one wins
    for match in _BOX_RE.finditer(text):
        if match.group(1) is not None:  # "\boxed 5" form
            best = match.span(1)
        else:
            brace = match.end() - 1
            if brace in closing:
                best = (brace + 1, closing[brace])
    return None if best is None else text[best[0]:best[1]].strip()


def boxed_spans(text: str) -> list[tuple[int, int]]:
    r"""``(start, end)`` of every complete outermost ``\boxed{...}`` / ``\fbox{...}`` content, in text
    order (a box nested in another counts once, as part of the outer one). Linear time."""
    closing = _pair_braces(text)
    spans: list[tuple[int, int]] = []
    for match in _BOX_RE.finditer(text):
        if match.group(1) is not None:  # "\boxed 5" form
            span = match.span(1)
        else:
            brace = match.end() - 1
            if brace not in closing:
                continue
            span = (brace + 1, closing[brace])
        if spans and span[0] < spans[-1][1]:  # inside the previous box
            continue
        spans.append(span)
    return spans


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?: +([^\s${}]+)| *\{)")


def _pair_braces(text: str) -> dict[int, int]:
    """Map each unescaped ``{`` to its matching ``}``."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            stack.append(i)
        elif ch == "}" and (i == 0 or text[i - 1] != "\\") and stack:
            pairs[stack.pop()] = i
    return pairs


def count_think_blocks(text: str) -> int:
    """How many complete ``<think>...</think>`` blocks ``text`` has."""
    return len(tag_spans(text, "think")[0])


def find_unknown_tags(text: str, known: Collection[str]) -> list[str]:
    """Tag names opened in ``text`` that are not in ``known`` (for format checks)."""
    return sorted({t for t in re.findall(r"<([a-zA-Z_][\w-]*)>", text) if t not in known})
