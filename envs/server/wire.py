"""The OpenEnv wire format for text environments, shared by the server and the remote client.

Plain dicts and the standard library only, so the client needs no FastAPI or pydantic. One frame is
one JSON text message. Client to server: ``{"type": "reset", "data": {seed?, episode_id?, options?,
...}}``, ``{"type": "step", "data": {"message": str}}``, ``{"type": "state"}``, ``{"type": "close"}``,
``{"type": "mcp", "data": <JSON-RPC 2.0>}`` (OpenEnv 0.10.0's types) and this suite's extensions
``agentr1.spec``, ``agentr1.demonstration``, ``agentr1.end_unfinished``. Server to client:
``observation`` / ``state`` / ``mcp`` / ``error`` frames (``error`` carries ``message`` and ``code``).

An observation frame holds OpenEnv's ``{"observation": {...}, "reward", "done", "metadata"}``. The
observation has the text, the chat messages this turn added, the step's named reward components,
the episode metrics (final step only) and both Gymnasium flags; ``metadata`` is the env's whole
``info`` dict, so a remote client rebuilds ``(obs, reward, terminated, truncated, info)`` exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

ACTION_FIELD = "message"  # the step data's one field: the model's text (as OpenEnv's text envs name it)
MAX_DEPTH = 64  # deeper JSON in a frame or body is refused before any code walks it recursively
MAX_MESSAGE_CHARS = 500  # error messages are cut here: an echo of a client's 10 MB value is not a message

# OpenEnv 0.10.0 ``WSErrorCode`` values.
INVALID_JSON = "INVALID_JSON"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
VALIDATION_ERROR = "VALIDATION_ERROR"
EXECUTION_ERROR = "EXECUTION_ERROR"
CAPACITY_REACHED = "CAPACITY_REACHED"
FACTORY_ERROR = "FACTORY_ERROR"
SESSION_ERROR = "SESSION_ERROR"

# Suite extensions to the message types (OpenEnv clients never send them).
SPEC = "agentr1.spec"
DEMONSTRATION = "agentr1.demonstration"
END_UNFINISHED = "agentr1.end_unfinished"


class FrameError(ValueError):
    """A frame or body that is not JSON data the protocol can take; ``code`` is the error frame's."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def loads(raw: str | bytes) -> Any:
    """The JSON value of a frame or body; ``FrameError`` for anything else, with a short message.

    Invalid UTF-8, malformed JSON, integer literals past Python's digit limit and nesting past
    ``MAX_DEPTH`` are refused; lone surrogates (``"\\ud800"``, valid JSON but not Unicode) become
    U+FFFD, as a UTF-8 decoder set to replace would, so nothing downstream meets unencodable text.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"invalid JSON: not UTF-8 (byte {exc.start})", INVALID_JSON) from None
    try:
        value = json.loads(raw)
    except RecursionError:
        raise FrameError("invalid JSON: nested too deeply", INVALID_JSON) from None
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits()
        raise FrameError(f"invalid JSON: {short(str(exc), 200)}", INVALID_JSON) from None
    if raw.count("[") + raw.count("{") > MAX_DEPTH:  # only then can the value be that deep
        _check_depth(value)
    if "\\ud" in raw or "\\uD" in raw:
        value = _replace_surrogates(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise FrameError(f"JSON nested deeper than {MAX_DEPTH} levels", VALIDATION_ERROR)
                stack.append((child, depth + 1))


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON data: containers recursively, numpy scalars as numbers, sets sorted, else ``str``.

    Non-finite floats stay floats (Python's ``json`` writes and reads ``NaN``/``Infinity``).
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=repr)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return to_jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def observation_data(text: str, reward: float | None, terminated: bool, truncated: bool,
                     info: Mapping[str, Any], *, reset: bool) -> dict[str, Any]:
    """The ``data`` of an observation frame for one reset (``reset=True``) or step result."""
    meta = to_jsonable(info)
    messages = meta.get("messages", []) if reset else meta.get("new_messages", [])
    observation = {
        "text": text,
        "messages": messages,
        "reward_components": meta.get("reward_components", {}),
        "metrics": meta.get("metrics"),
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "metadata": meta,
    }
    return {"observation": observation, "reward": None if reward is None else float(reward),
            "done": bool(terminated or truncated), "metadata": meta}


def frame(kind: str, data: Any) -> str:
    """One server frame as JSON text."""
    return json.dumps({"type": kind, "data": data}, ensure_ascii=True)


def error_frame(message: str, code: str, **extra: Any) -> str:
    return frame("error", {"message": short(message), "code": code, **to_jsonable(extra)})


def step_result(data: Mapping[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
    """The Gymnasium step tuple an observation frame's ``data`` encodes."""
    observation = data["observation"]
    info = dict(data.get("metadata") or observation.get("metadata") or {})
    return (str(observation.get("text", "")), float(data.get("reward") or 0.0), bool(observation.get("terminated")),
            bool(observation.get("truncated")), info)
