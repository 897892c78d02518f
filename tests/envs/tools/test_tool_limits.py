"""Out-of-range numbers and unprintable results answer with a clear tool message, never a traceback."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.core.parsing import ToolCall
from envs.core.process_pool import Outcome
from envs.core.tools import run_tool
from envs.tools.calculator import calculator_tool, evaluate_expression
from envs.tools.sympy_tool import compute, sympy_tool


@pytest.mark.parametrize("expression", ["1e999", "-1e999", "1e-999", "1e308*10", "1e999999999", "(1e100)**2",
                                        "9" * 250, "2**64 * 1e190"])
def test_calculator_out_of_range_is_a_clear_tool_message_without_a_traceback(expression, caplog):
    tools = {"calculator": calculator_tool()}
    with caplog.at_level(logging.DEBUG):
        result = run_tool(tools, ToolCall("calculator", {"expression": expression}))
    assert not result.ok and result.status == "error"
    assert "out of range" in result.content and "Traceback" not in result.content
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


def test_calculator_reads_decimal_literals_exactly():
    assert evaluate_expression("0.1 + 0.2") == evaluate_expression("3/10")
    assert evaluate_expression("1e-5 * 1e5") == 1  # not rounded through a float
    assert evaluate_expression("1_000.5") * 2 == 2001


@given(mantissa=st.integers(0, 10**6), exponent=st.integers(-10**6, 10**6))
def test_calculator_answers_every_scientific_literal_quickly(mantissa, exponent):
    result = run_tool({"calculator": calculator_tool()}, ToolCall("calculator", {"expression": f"{mantissa}e{exponent}"}))
    assert result.status in ("ok", "error") and (result.ok or "out of range" in result.content)


def test_sympy_summarises_integers_too_long_to_print():
    shown = compute("factorial(2000)")
    assert shown.startswith("3.316275092450633e+5735") and "5736 digits" in shown
    assert "4300" not in shown and "set_int_max_str_digits" not in shown
    assert compute("factorial(2000)/factorial(1999)") == "2000"


def test_sympy_refuses_expressions_holding_unprintable_numbers_with_a_clear_message():
    from envs.tools.sympy_tool import SympyInputError

    with pytest.raises(SympyInputError, match="too long to print"):
        compute("factorial(2000) * x")


class _Pool:
    closed = False

    def __init__(self, status):
        self.status = status

    def call(self, fn, *args, timeout=None):
        return Outcome(self.status, error="worker died")


@pytest.mark.parametrize("status, tool_status", [("busy", "busy"), ("crashed", "worker_crashed")])
def test_sympy_infrastructure_failures_carry_infrastructure_statuses(status, tool_status):
    result = run_tool({"sympy": sympy_tool(pool=_Pool(status))}, ToolCall("sympy", {"expression": "x + 1"}))
    assert not result.ok and result.status == tool_status and "try again" in result.content
