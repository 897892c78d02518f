"""Parsing model text: tool calls (Hermes JSON and short tags), final answers, think blocks.

Every function here is total: any string in, a well-formed result out, never an exception. Errors
in the model's text come back as ``ParseError`` values so the environment can turn them into an
observation and a named penalty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ToolCall:
    """One parsed request to run a tool."""

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    form: str = "json"  # "json" (Hermes <tool_call>) or "tag" (<search>...</search>)

    def key(self) -> str:
        """A canonical string for spotting repeated calls."""
        return self.name + "\x00" + json.dumps(self.arguments, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class ParseError:
    """A tool-call attempt that could not be understood."""

    kind: str  # "malformed_json" | "missing_name" | "bad_arguments" | "unclosed_tag"
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
               max_calls: int = 8) -> ParsedTurn:
    """Parse one assistant turn.

    ``tag_tools`` maps a tag name to the argument it fills, e.g. ``{"search": "query"}`` makes
    ``<search>x</search>`` the call ``search(query="x")``. Calls beyond ``max_calls`` are dropped.
    """
    body = strip_reasoning(text)
    turn = ParsedTurn(text=text, body=body)
    if json_tools:
        _parse_json_calls(body, turn)
    for tag, argument in (tag_tools or {}).items():
        _parse_tag_calls(body, tag, argument, turn)
    del turn.tool_calls[max_calls:]
    return turn


def _parse_json_calls(body: str, turn: ParsedTurn) -> None:
    for match in _TOOL_CALL_RE.finditer(body):
        raw = match.group(1)
        decoded = _decode_json_call(raw)
        (turn.tool_calls if isinstance(decoded, ToolCall) else turn.errors).append(decoded)
    tail = _TOOL_CALL_RE.sub("", body)
    if "<tool_call>" in tail:
        turn.errors.append(ParseError("unclosed_tag", "<tool_call> has no matching </tool_call>", tail[-200:]))


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
    return ToolCall(name.strip(), arguments, raw=raw, form="json")


def _parse_tag_calls(body: str, tag: str, argument: str, turn: ParsedTurn) -> None:
    pattern = re.compile(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)
    for match in pattern.finditer(body):
        turn.tool_calls.append(ToolCall(tag, {argument: match.group(1).strip()}, raw=match.group(0), form="tag"))
    if f"<{tag}>" in pattern.sub("", body):
        turn.errors.append(ParseError("unclosed_tag", f"<{tag}> has no matching </{tag}>", body[-200:]))


def extract_tag(text: str, tag: str) -> str | None:
    """Content of the last complete ``<tag>...</tag>`` in ``text`` (stripped), or ``None``."""
    matches = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, re.DOTALL)
    return matches[-1].strip() if matches else None


def extract_last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with balanced braces, or ``None``.

    Only the last box counts: several boxes are not merged into a set.
    """
    best = None
    for command in ("\\boxed", "\\fbox"):
        start = text.rfind(command)
        while start >= 0:
            content = _balanced_argument(text, start + len(command))
            if content is not None:
                if best is None or start > best[0]:
                    best = (start, content)
                break
            start = text.rfind(command, 0, start)
    return None if best is None else best[1].strip()


def _balanced_argument(text: str, pos: int) -> str | None:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":  # "\boxed 5" form: up to the next whitespace or "$"
        match = re.match(r"[^\s$]+", text[pos:])
        return match.group(0) if match else None
    depth = 0
    for i in range(pos, len(text)):
        ch = text[i]
        if ch == "{" and text[i - 1] != "\\":
            depth += 1
        elif ch == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[pos + 1:i]
    return None


def count_think_blocks(text: str) -> int:
    """How many complete ``<think>...</think>`` blocks ``text`` has."""
    return len(re.findall(r"<think>.*?</think>", text, re.DOTALL))


def find_unknown_tags(text: str, known: Collection[str]) -> list[str]:
    """Tag names opened in ``text`` that are not in ``known`` (for format checks)."""
    return sorted({t for t in re.findall(r"<([a-zA-Z_][\w-]*)>", text) if t not in known})
