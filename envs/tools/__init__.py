"""Concrete tools shared by environments (the retrieval search tool lives in ``envs.retrieval``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envs.core.tools import Tool
from envs.tools.calculator import calculator_tool, evaluate_expression
from envs.tools.python_tool import PythonToolConfig, python_tool
from envs.tools.sympy_tool import sympy_tool

TOOL_NAMES = ("calculator", "sympy", "python")

__all__ = ["TOOL_NAMES", "PythonToolConfig", "calculator_tool", "evaluate_expression", "make_tool", "python_tool",
           "sympy_tool"]


def make_tool(spec: str | Tool, *, timeout: float = 5.0,
              python: PythonToolConfig | Mapping[str, Any] | None = None) -> Tool:
    """A tool by name (``TOOL_NAMES``), or ``spec`` itself if it is a ``Tool``.

    ``timeout``: the sympy tool's hard limit per call; ``python``: the python tool's limits and options.
    """
    if isinstance(spec, Tool):
        return spec
    if spec == "sympy":
        return sympy_tool(timeout=timeout)
    if spec == "calculator":
        return calculator_tool()
    if spec == "python":
        return python_tool(python)
    raise ValueError(f"unknown tool {spec!r}; use one of {', '.join(TOOL_NAMES)} or a Tool")
