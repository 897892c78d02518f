import time

from envs.core.parsing import ToolCall
from envs.core.tools import Tool, ToolError, ToolResult, run_tool
from envs.tools.calculator import calculator_tool, evaluate_expression
from fractions import Fraction

import pytest


def _echo(text: str) -> str:
    return text * 3


def _slow(text: str) -> str:
    time.sleep(5)
    return text


def _broken(text: str) -> str:
    raise RuntimeError("boom")


def _refuse(text: str) -> str:
    raise ToolError("nothing found")


SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": False}
TOOLS = {t.name: t for t in (
    Tool("echo", "repeat", SCHEMA, _echo, max_output_chars=10),
    Tool("slow", "sleeps", SCHEMA, _slow, timeout=0.2),
    Tool("broken", "raises", SCHEMA, _broken),
    Tool("refuse", "expected failure", SCHEMA, _refuse),
)}


@pytest.mark.parametrize("call, status", [
    (ToolCall("nope", {}), "unknown_tool"),
    (ToolCall("echo", {}), "bad_arguments"),
    (ToolCall("echo", {"text": 3}), "bad_arguments"),
    (ToolCall("echo", {"text": "a", "extra": 1}), "bad_arguments"),
    (ToolCall("slow", {"text": "a"}), "timeout"),
    (ToolCall("broken", {"text": "a"}), "error"),
    (ToolCall("refuse", {"text": "a"}), "error"),
])
def test_failures_become_results_not_exceptions(call, status):
    start = time.perf_counter()
    result = run_tool(TOOLS, call)
    assert isinstance(result, ToolResult) and not result.ok and result.status == status
    assert result.content.startswith("Error:")
    assert time.perf_counter() - start < 2


def test_long_output_is_truncated_and_flagged():
    result = run_tool(TOOLS, ToolCall("echo", {"text": "abcdef"}))
    assert result.ok and result.truncated and result.content.startswith("abcdefabcd")


def test_schema_is_the_openai_function_form():
    schema = calculator_tool().schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "calculator"
    assert schema["function"]["parameters"]["required"] == ["expression"]


@pytest.mark.parametrize("expression, value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", Fraction(7, 2)), ("1/3*3", 1), ("2^10", 1024),
    ("-3 + +4", 1), ("1,234 + 1", 1235), ("10 // 3", 3), ("10 % 3", 1), ("0.1 + 0.2", Fraction(3, 10)), ("6 × 7", 42),
])
def test_calculator_is_exact(expression, value):
    assert evaluate_expression(expression) == value


@pytest.mark.parametrize("expression", [
    "9**9**9**9", "2**100000", "10**300", "1/0", "__import__('os')", "abs(-1)", "x + 1", "", "1" * 300, "2**0.5",
    "[1, 2]", "'a' * 3", "(" * 200 + ")" * 200,
])
def test_calculator_rejects_unsafe_or_huge_input_quickly(expression):
    start = time.perf_counter()
    result = run_tool({"calculator": calculator_tool()}, ToolCall("calculator", {"expression": expression}))
    assert not result.ok and result.status in ("error", "bad_arguments")
    assert time.perf_counter() - start < 1
