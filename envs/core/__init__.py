"""The environment contract: ``TextEnv``, text spaces, parsing, tools, reward components, data errors."""

from envs.core.data import DataError, load_records, require_fields
from envs.core.env import ItemListEnv, TextEnv, coerce_action, end_unfinished
from envs.core.parsing import ParsedTurn, ParseError, ToolCall, extract_last_boxed, extract_tag, parse_turn
from envs.core.rewards import ProcessRule, RewardLedger, resolve_weights
from envs.core.spaces import UnicodeText
from envs.core.tools import INFRASTRUCTURE_STATUSES, Tool, ToolError, ToolResult, run_tool, tool

__all__ = [
    "INFRASTRUCTURE_STATUSES", "DataError", "ItemListEnv", "ParseError", "ParsedTurn", "ProcessRule",
    "RewardLedger", "TextEnv", "Tool", "ToolCall", "ToolError", "ToolResult", "UnicodeText", "coerce_action",
    "end_unfinished", "extract_last_boxed", "extract_tag", "load_records", "parse_turn", "require_fields",
    "resolve_weights", "run_tool", "tool",
]
