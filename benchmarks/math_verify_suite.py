"""math-verify's own test cases, read from its source distribution at run time (never stored here).

``load_suite()`` downloads ``math-verify==0.9.0``'s sdist with pip (or reads an unpacked copy), then
reads every ``@pytest.mark.parametrize`` table of ``(gold, pred, expected)`` rows from its
``tests/`` with :mod:`ast`, without importing or running the test files. Tables that exercise an
option rather than the default comparison (``strict``, ``allow_set_relation_comp``) are left out, as
are the configuration / timeout tests that have no such table; a ``precision`` column is kept.
The one row written as an f-string over ``math.sqrt`` is evaluated with only ``math`` in scope.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.9.0"
_OPTION_COLUMNS = {"strict", "allow_set_relation_comp", "config"}


@dataclass(frozen=True)
class SuiteCase:
    gold: str
    pred: str
    expected: bool
    precision: int
    match_types: tuple[str, ...]  # the extraction configs the test gives compare_strings ("latex", "expr")
    source: str  # "file::test_name"


def download_tests(dest: Path, version: str = VERSION) -> Path:
    """``tests/`` of math-verify's sdist, downloaded with pip into ``dest`` (reused when present)."""
    tests = dest / f"math_verify-{version}" / "tests"
    if tests.is_dir():
        return tests
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "-d", str(dest), f"math-verify=={version}"], check=True)
    archive = next(dest.glob(f"math_verify-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name and m.name.endswith(".py") and m.isfile()]
        tar.extractall(dest, members=members, filter="data")
    return tests


def _value(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        code = compile(ast.Expression(node), "<case>", "eval")
        return eval(code, {"__builtins__": {}, "math": math})  # noqa: S307 - f-strings over math.* only


def _call_settings(func: ast.FunctionDef) -> tuple[tuple[str, ...], int | None]:
    """``match_types`` and a constant ``precision`` passed to ``compare_strings`` in a test body."""
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "compare_strings":
            kwargs = {k.arg: k.value for k in node.keywords}
            types = tuple(ast.literal_eval(kwargs["match_types"])) if "match_types" in kwargs else ("latex", "expr")
            precision = kwargs.get("precision")
            return types, (precision.value if isinstance(precision, ast.Constant) else None)
    return ("latex", "expr"), None


def read_cases(tests: Path) -> list[SuiteCase]:
    """Every default-comparison ``(gold, pred, expected[, precision])`` row in ``tests/*.py``."""
    cases: list[SuiteCase] = []
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for deco in func.decorator_list:
                if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
                if "gold" not in names or "pred" not in names or _OPTION_COLUMNS & set(names):
                    continue
                label = "expected" if "expected" in names else "result"
                types, call_precision = _call_settings(func)
                rows = deco.args[1]
                if not isinstance(rows, (ast.List, ast.Tuple)):
                    continue
                for row in rows.elts:
                    values = dict(zip(names, (_value(e) for e in row.elts), strict=True))  # type: ignore[attr-defined]
                    precision = int(values.get("precision", call_precision or 6))
                    cases.append(SuiteCase(str(values["gold"]), str(values["pred"]), bool(values[label]),
                                           precision, types, f"{path.name}::{func.name}"))
    return cases


def load_suite(cache: Path | None = None) -> list[SuiteCase]:
    """Download (once) and read math-verify's cases."""
    root = cache or Path(tempfile.gettempdir()) / "agentr1-math-verify-suite"
    return read_cases(download_tests(root))
