"""Concrete tools shared by environments (the retrieval search tool lives in ``envs.retrieval``)."""

from envs.tools.calculator import calculator_tool, evaluate_expression

__all__ = ["calculator_tool", "evaluate_expression"]
