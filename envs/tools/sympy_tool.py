"""A sandboxed SymPy tool for multi-turn math: simplify, expand, factor, solve, differentiate, integrate.

Model text is never passed to ``eval`` (``sympy.sympify`` and ``parse_expr`` both ``eval``): the
expression is parsed with ``ast`` and rebuilt node by node from a whitelist (numbers, symbols, the
usual operators, comparisons and a fixed set of functions). Attribute access, subscripts, keywords,
lambdas and every other construct are refused. Symbolic algebra can still run away (``solve`` on a
hard system, a huge power), so each call runs in a worker process of the shared math pool with a
hard wall-clock timeout; sizes that are obviously out of reach are refused before computing.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from envs.core.process_pool import ProcessPool, shared_pool
from envs.core.tools import Tool, ToolError, ToolResult

OPERATIONS = ("evaluate", "simplify", "expand", "factor", "solve", "diff", "integrate")
MAX_EXPRESSION_CHARS = 500
MAX_OUTPUT_CHARS = 2_000
_SHOW_DIGITS = 1_000  # integers longer than this are summarised rather than printed
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 2_000
MAX_NODES = 400
POOL_NAME = "agentr1-math"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")
_FUNCTIONS = {
    "sqrt": "sqrt", "cbrt": "cbrt", "root": "root", "exp": "exp", "log": "log", "ln": "log",
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "asin": "asin", "acos": "acos", "atan": "atan", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "abs": "Abs", "Abs": "Abs", "floor": "floor",
    "ceiling": "ceiling", "ceil": "ceiling", "factorial": "factorial", "binomial": "binomial", "gcd": "gcd",
    "lcm": "lcm", "Rational": "Rational", "max": "Max", "min": "Min", "Max": "Max", "Min": "Min",
    "re": "re", "im": "im", "conjugate": "conjugate",
}
_CONSTANTS = {"pi": "pi", "E": "E", "e": "E", "I": "I", "oo": "oo", "inf": "oo", "infinity": "oo"}


class SympyInputError(ValueError):
    """The expression or request is not allowed or not understood; the message says why."""


def sympy_tool(timeout: float = 5.0, pool: ProcessPool | None = None) -> Tool:
    """The ``sympy`` tool; the tag form ``<sympy>expression</sympy>`` runs ``evaluate``."""

    def run(expression: str, operation: str = "evaluate", variable: str | None = None) -> ToolResult:
        if operation not in OPERATIONS:
            raise ToolError(f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
        if not isinstance(expression, str) or not expression.strip():
            raise ToolError("expression must be a non-empty string")
        if len(expression) > MAX_EXPRESSION_CHARS:
            raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        if variable is not None and (not isinstance(variable, str) or not _NAME_RE.match(variable)):
            raise ToolError("variable must be a plain name such as x")
        workers = pool if pool is not None and not pool.closed else shared_pool(POOL_NAME, timeout=timeout, preload=("envs.math.verify:warm_up",))
        outcome = workers.call(compute, expression, operation, variable, timeout=timeout)
        if outcome.ok:
            return ToolResult(str(outcome.value))
        if outcome.status == "timeout":
            return ToolResult(f"Error: the computation did not finish within {timeout:g}s.", ok=False, status="timeout")
        if outcome.status == "busy":  # infrastructure, not the model: the env core does not charge these
            return ToolResult("Error: the sympy service is busy; try again.", ok=False, status="busy")
        if outcome.status == "crashed":
            return ToolResult("Error: the sympy worker process crashed; try again.", ok=False, status="worker_crashed")
        message = outcome.error.split(": ", 1)[1] if outcome.error.startswith("SympyInputError: ") else outcome.error
        raise ToolError(message)

    return Tool(
        name="sympy",
        description=("Exact symbolic maths with SymPy. operation: evaluate (simplify, plus a decimal value), simplify, "
                     "expand, factor, solve (an expression = 0, an equation with '=', or a list of equations), diff, "
                     "integrate. Use ** or ^ for powers, e.g. x^2 - 5*x + 6."),
        parameters={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "e.g. (x+1)^2 - 1, or x^2 = 4, or [x + y = 3, x - y = 1]"},
                "operation": {"type": "string", "enum": list(OPERATIONS), "description": "default: evaluate"},
                "variable": {"type": "string", "description": "variable for solve/diff/integrate (default: inferred)"},
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        fn=run,
        tag_argument="expression",
        # The pool enforces ``timeout`` on the work and answers ``busy`` past its queue deadline; this
        # last-resort limit (charged to the model) must stay above both plus a worker start.
        timeout=2 * timeout + 30.0,
        max_output_chars=MAX_OUTPUT_CHARS,
    )


# ---------------------------------------------------------------------------- worker side
def compute(expression: str, operation: str = "evaluate", variable: str | None = None) -> str:
    """Parse ``expression`` safely and apply ``operation``; runs inside a pool worker."""
    import sympy

    parsed = parse_expression(expression)
    symbol = sympy.Symbol(variable) if variable else None
    if operation == "solve":
        equations = list(parsed) if isinstance(parsed, tuple) else [parsed]
        symbols = [symbol] if symbol is not None else sorted(set().union(*(e.free_symbols for e in equations)), key=str)
        if not symbols:
            raise SympyInputError("nothing to solve for: the expression has no variables")
        result = sympy.solve(equations if len(equations) > 1 else equations[0], *symbols, dict=len(symbols) > 1)
        return _show(result)
    if isinstance(parsed, tuple):
        raise SympyInputError(f"{operation} takes one expression, not a list")
    if isinstance(parsed, sympy.core.relational.Relational) and operation != "evaluate":
        raise SympyInputError(f"{operation} takes an expression, not an equation (use solve)")
    if operation in ("diff", "integrate"):
        if symbol is None:
            free = sorted(parsed.free_symbols, key=str)
            if len(free) != 1:
                raise SympyInputError(f"{operation}: say which variable (the expression has {len(free)} variables)")
            symbol = free[0]
        result = sympy.diff(parsed, symbol) if operation == "diff" else sympy.integrate(parsed, symbol)
        return _show(result)
    if operation == "expand":
        return _show(sympy.expand(parsed))
    if operation == "factor":
        return _show(sympy.factor(parsed))
    result = sympy.simplify(parsed)
    if operation == "evaluate" and getattr(result, "is_number", False) and not result.is_Integer:
        try:
            value = sympy.N(result, 15)
            if value != result:
                return f"{_show(result)} ≈ {value}"
        except (TypeError, ValueError):
            pass
    return _show(result)


def _show(result: Any) -> str:
    """``result`` as text; a number too long to show is summarised (digit count, leading digits), never cut."""
    import sympy

    if isinstance(result, sympy.Integer) and abs(int(result)).bit_length() > _SHOW_DIGITS * 3.33:
        return _summarise_integer(int(result))
    try:
        text = str(result)
    except ValueError:  # Python refuses to print integers of more than sys.get_int_max_str_digits() digits
        raise SympyInputError("the result contains numbers too long to print; ask for something smaller "
                              "(for example its logarithm, or the result modulo a number)") from None
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " [truncated]"


def _summarise_integer(value: int) -> str:
    """A huge integer as its approximate value and digit count: an exact prefix, not a cut-off number."""
    magnitude = abs(value)
    digits = math.floor(math.log10(magnitude)) + 1
    power = 10 ** max(0, digits - 16)  # 16 leading digits, computed without printing the whole number
    if 10 ** (digits - 1) > magnitude:  # log10 rounded up at an exact power of ten
        digits -= 1
        power //= 10
    lead = str(magnitude // power)[:16]
    mantissa = f"{lead[0]}.{lead[1:]}"
    sign = "-" if value < 0 else ""
    return f"{sign}{mantissa}e+{digits - 1} (an integer with {digits} digits, too long to show in full)"


def parse_expression(text: str) -> Any:
    """A SymPy object for ``text`` built from a whitelist of syntax; ``SympyInputError`` otherwise.

    ``a = b`` becomes ``Eq(a, b)``; ``[e1, e2]`` or ``e1, e2`` a tuple (a system for ``solve``).
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SympyInputError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    source = text.strip().replace("^", "**").replace("×", "*").replace("÷", "/").replace("−", "-")
    source = re.sub(r"(?<![=<>!])=(?!=)", "==", source)  # a single '=' is an equation
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise SympyInputError(f"cannot parse the expression: {getattr(exc, 'msg', None) or exc}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise SympyInputError(f"expression has more than {MAX_NODES} parts")
    return _Builder().build(tree.body)


class _Builder:
    def __init__(self) -> None:
        import sympy

        self.sp = sympy

    def build(self, node: ast.AST) -> Any:
        sp = self.sp
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.build(e) for e in node.elts)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise SympyInputError("only numbers, names and operators are allowed")
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Rational(repr(node.value))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return getattr(sp, _CONSTANTS[node.id])
            if not _NAME_RE.match(node.id):
                raise SympyInputError(f"name {node.id!r} is not allowed")
            return sp.Symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self.build(node.left), self.build(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Mod):
                return sp.Mod(left, right)
            if isinstance(node.op, ast.Pow):
                self._check_power(left, right)
                return left ** right
            raise SympyInputError(f"operator {type(node.op).__name__} is not supported")
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = self.build(node.left), self.build(node.comparators[0])
            ops = {ast.Eq: sp.Eq, ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
            op = ops.get(type(node.ops[0]))
            if op is None:
                raise SympyInputError("only =, <, <=, >, >= comparisons are supported")
            return op(left, right)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                name = node.func.id if isinstance(node.func, ast.Name) else "this call"
                raise SympyInputError(f"{name} is not an available function; use one of: {', '.join(sorted(set(_FUNCTIONS)))}")
            args = [self.build(a) for a in node.args]
            name = _FUNCTIONS[node.func.id]
            if name == "factorial" and args and args[0].is_number and (not args[0].is_finite or abs(args[0]) > MAX_FACTORIAL):
                raise SympyInputError(f"factorial arguments above {MAX_FACTORIAL} are not supported")
            try:
                return getattr(sp, name)(*args)
            except (TypeError, ValueError) as exc:
                raise SympyInputError(f"{node.func.id}: {exc}") from None
        raise SympyInputError(f"{type(node).__name__} is not allowed in an expression")

    def _check_power(self, base: Any, exponent: Any) -> None:
        if getattr(exponent, "is_number", False) and exponent.is_finite and abs(exponent) > MAX_EXPONENT:
            if not (getattr(base, "is_number", False) and base in (0, 1, -1)):
                raise SympyInputError(f"exponents above {MAX_EXPONENT} are not supported")
