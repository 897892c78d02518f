"""A calculator tool that evaluates arithmetic without ``eval``.

Expressions are parsed with ``ast`` and only numbers, parentheses and ``+ - * / // % **`` are
allowed. Exponents, operand sizes and expression length are bounded, so no input can run for long
or exhaust memory; exact rationals keep ``1/3*3`` equal to ``1``.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

from envs.core.tools import Tool, ToolError

MAX_EXPRESSION_CHARS = 256
MAX_EXPONENT = 64
MAX_DIGITS = 200

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def evaluate_expression(expression: str) -> Fraction:
    """Evaluate an arithmetic expression exactly; raise ``ToolError`` with a readable reason."""
    if not isinstance(expression, str):
        raise ToolError("expression must be a string")
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**").replace(",", "")
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"cannot parse expression: {getattr(exc, 'msg', exc)}") from None
    return _eval(tree.body, text)


def _eval(node: ast.AST, text: str) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        if isinstance(node.value, float):
            return _check_size(_exact_decimal(ast.get_source_segment(text, node) or repr(node.value)))
        return _check_size(Fraction(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, text), _eval(node.right, text)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ToolError(f"operator {type(node.op).__name__} is not supported")
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ToolError("division by zero")
        return _check_size(Fraction(op(left, right)))
    raise ToolError("only numbers, parentheses and + - * / // % ** are allowed")


_DECIMAL = re.compile(r"^(\d*)\.?(\d*)(?:[eE]([+-]?\d+))?$")


def _exact_decimal(literal: str) -> Fraction:
    """The exact value of a decimal literal as written (``1e-400`` is not 0, ``1e999`` is not infinity).

    The exponent is bounded before any arithmetic, so ``1e999999999`` costs nothing."""
    match = _DECIMAL.match(literal.replace("_", ""))
    if match is None or not (match.group(1) or match.group(2)):
        raise ToolError(f"cannot read the number {literal[:40]!r}")
    whole, fraction, exponent = match.group(1), match.group(2), int(match.group(3) or 0)
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return Fraction(0)
    scale = exponent - len(fraction)
    if len(digits) > MAX_DIGITS or abs(scale) > MAX_DIGITS:
        raise ToolError(f"number out of range: {literal[:40]} is beyond the {MAX_DIGITS}-digit limit of this calculator")
    return Fraction(int(digits)) * Fraction(10) ** scale


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ToolError("only whole-number exponents are supported")
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent larger than {MAX_EXPONENT}")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero")
    # Both parts are raised to the power (a negative exponent swaps them), so bound both before computing.
    bits = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
    if bits * abs(int(exponent)) > _MAX_BITS:
        raise ToolError("result too large")
    return _check_size(base ** int(exponent))


# A number with more than this many bits has more than MAX_DIGITS digits (log2(10) < 3.33 < 4).
_MAX_BITS = MAX_DIGITS * 4


def _check_size(value: Fraction) -> Fraction:
    # Bit lengths first: str() of a huge int is slow and, past 4300 digits, raises ValueError.
    for part in (abs(value.numerator), value.denominator):
        if part.bit_length() > _MAX_BITS or len(str(part)) > MAX_DIGITS:
            raise ToolError(f"number out of range: a result has more than {MAX_DIGITS} digits")
    return value


def format_number(value: Fraction) -> str:
    """An integer as is; otherwise the exact fraction and a 10-significant-digit decimal."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator} (≈ {float(value):.10g})"


def _calculate(expression: str) -> str:
    return format_number(evaluate_expression(expression))


def calculator_tool(timeout: float = 2.0) -> Tool:
    """The ``calculator`` tool; the tag form is ``<calculator>expression</calculator>``."""
    return Tool(
        name="calculator",
        description="Evaluate an arithmetic expression exactly (+, -, *, /, //, %, ** and parentheses).",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "for example (12 + 7) * 3"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        fn=_calculate,
        tag_argument="expression",
        timeout=timeout,
        max_output_chars=512,
    )
