"""Concrete tools shared by environments (the retrieval search tool lives in ``envs.retrieval``)."""

from envs.tools.calculator import calculator_tool, evaluate_expression
from envs.tools.sympy_tool import sympy_tool

__all__ = ["calculator_tool", "evaluate_expression", "sympy_tool"]
