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


def test_stuck_calls_do_not_starve_later_calls():
    import threading

    release = threading.Event()
    stuck = Tool("stuck", "never returns in time", SCHEMA, lambda text: release.wait(30) and text, timeout=0.02)
    tools = {"stuck": stuck, "echo": TOOLS["echo"]}
    try:
        for i in range(20):  # more than a 16-thread pool holds
            assert run_tool(tools, ToolCall("stuck", {"text": str(i)})).status == "timeout"
        result = run_tool(tools, ToolCall("echo", {"text": "a"}))
        assert result.ok and result.content == "aaa"
    finally:
        release.set()


def test_a_stuck_tool_does_not_block_interpreter_exit():
    import subprocess
    import sys

    code = (
        "import time\n"
        "from envs.core.parsing import ToolCall\n"
        "from envs.core.tools import Tool, run_tool\n"
        "t = Tool('hang', 'sleeps', {'type': 'object'}, lambda: time.sleep(120), timeout=0.1)\n"
        "print(run_tool({'hang': t}, ToolCall('hang', {})).status)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "timeout" and time.perf_counter() - start < 30


def test_abandoned_calls_are_bounded(monkeypatch):
    import threading

    from envs.core import tools as tools_module

    release = threading.Event()
    monkeypatch.setattr(tools_module, "MAX_ABANDONED_CALLS", 3)
    stuck = {"stuck": Tool("stuck", "hangs", SCHEMA, lambda text: release.wait(30) and text, timeout=0.02)}
    try:
        assert [run_tool(stuck, ToolCall("stuck", {"text": str(i)})).status for i in range(4)] == ["timeout"] * 4
        assert "unavailable" in run_tool(stuck, ToolCall("stuck", {"text": "x"})).content
    finally:
        release.set()
    deadline = time.perf_counter() + 5
    while tools_module._too_many_abandoned() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert run_tool(TOOLS, ToolCall("echo", {"text": "b"})).ok


@pytest.mark.parametrize("expression", [
    "(1/1" + "0" * 199 + ")**64", "(1/1" + "0" * 199 + ")**-64", "(1" + "0" * 199 + ")**64",
])
def test_calculator_bounds_both_parts_of_a_power(expression):
    result = run_tool({"calculator": calculator_tool()}, ToolCall("calculator", {"expression": expression}))
    assert result.status == "error" and result.content in ("Error: result too large", "Error: number too large")
