"""The suite's packages under one installed name: ``envs`` -> ``agentr1_gym.envs`` (and adapters, baselines).

A checkout imports the design's top-level packages (``import envs``, ``python -m adapters.openrlhf``).
Installed, those names would overwrite other distributions' files (PyPI's ``envs``, AdapterHub's
``adapters``, OpenAI's ``baselines``), so a wheel ships them as ``agentr1_gym.envs``,
``agentr1_gym.adapters`` and ``agentr1_gym.baselines``, and the suite's references to itself are
renamed to match:

* absolute imports of the three packages (``from envs.core import X``, ``import envs``), with the
  same names bound;
* dotted references inside string literals and f-string text (entry points such as
  ``"envs.qa.env:HotpotQAEnv"``, ``-c`` code for worker processes, logger names, docstrings), and
  the same in YAML package data (verl's ``_target_``).

Edits keep every line where it was, so tracebacks point at the checkout's line numbers. This module
is stdlib only: the wheel build (``agentr1_build.BuildPy``) renames files with it, and an editable
install loads it from the checkout to rename the checkout's modules as they are imported (``install``).
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path

PACKAGE = "agentr1_gym"
SUITE_PACKAGES = ("envs", "adapters", "baselines")

# a dotted reference to a suite module in text: ``envs.qa.env``, ``adapters.openrlhf``, ``envs.{name}``
_DOTTED = re.compile(r"(?<![\w.\-/])(envs|adapters|baselines)(?=\.[A-Za-z_{])")
_FROM_MODULE = re.compile(r"\Afrom(?:\s|\\\n)+")

# ``agentr1_gym/__init__.py`` of a wheel or an editable install; {preamble} installs the editable finder.
INIT_SOURCE = '''"""AgentR1-Gym, installed: the checkout's ``envs``, ``adapters`` and ``baselines`` are
``agentr1_gym.envs``, ``agentr1_gym.adapters`` and ``agentr1_gym.baselines`` (names no other
distribution uses). ``import agentr1_gym`` registers every ``AgentR1/*`` id with Gymnasium and
re-exports ``agentr1_gym.envs``'s API; the command-line tools are ``agentr1-gym``,
``agentr1-openrlhf``, ... (see docs/install.md).
"""
{preamble}
from agentr1_gym.envs import *  # noqa: F401,F403 - registers the ids
from agentr1_gym.envs import __all__, __version__  # noqa: F401
'''


def rename_text(text: str, package: str = PACKAGE) -> str:
    """Prefix every dotted suite reference in plain text (YAML package data) with ``package``."""
    return _DOTTED.sub(rf"{package}.\1", text)


def _suite_root(name: str | None) -> bool:
    return name is not None and name.split(".")[0] in SUITE_PACKAGES


def _outside_fields(literal: str, package: str) -> str:
    """Rename the text of an f-string's source, leaving its ``{...}`` replacement fields alone."""
    masked, depth, i = [], 0, 0
    while i < len(literal):
        if depth == 0 and literal.startswith(("{{", "}}"), i):
            masked.append(literal[i:i + 2])
            i += 2
            continue
        ch = literal[i]
        masked.append(ch if depth == 0 else "\0")
        depth += (ch == "{") - (ch == "}" and depth > 0)
        i += 1
    starts = [m.start() for m in _DOTTED.finditer("".join(masked))]
    for start in reversed(starts):
        literal = literal[:start] + f"{package}." + literal[start:]
    return literal


def _import_statement(node: ast.Import, package: str) -> str:
    """An ``import`` statement that binds the same names to the renamed modules."""
    parts = []
    for alias in node.names:
        name, asname = alias.name, alias.asname
        if not _suite_root(name):
            parts.append(f"import {name}" + (f" as {asname}" if asname else ""))
        elif asname:
            parts.append(f"import {package}.{name} as {asname}")
        elif "." not in name:
            parts.append(f"from {package} import {name}")
        else:  # ``import envs.core.data`` loads the submodule and binds ``envs``
            parts.append(f"__import__({package + '.' + name!r}); from {package} import {name.split('.')[0]}")
    return "; ".join(parts)


def rename_source(source: str, package: str = PACKAGE) -> str:
    """The module ``source`` with its suite references renamed (see the module docstring)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    edits: list[tuple[int, int, str]] = []
    stack: list[ast.AST] = [tree]
    while stack:  # every node, but not the parts of an f-string (renamed as one source segment)
        node = stack.pop()
        if not isinstance(node, ast.JoinedStr):
            stack.extend(ast.iter_child_nodes(node))
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Constant, ast.JoinedStr)):
            continue
        start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
        segment = source[start:end]
        if isinstance(node, ast.Import) and any(_suite_root(a.name) for a in node.names):
            new = _import_statement(node, package) + " \\\n" * segment.count("\n")  # same lines
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _suite_root(node.module):
            head = _FROM_MODULE.match(segment)
            new = segment[:head.end()] + f"{package}." + segment[head.end():]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.search(node.value):
            new = rename_text(segment, package)
        elif isinstance(node, ast.JoinedStr):
            new = _outside_fields(segment, package)
        else:
            continue
        if new != segment:
            edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        source = source[:start] + new + source[end:]
    check_renamed(source, package, len(lines))
    return source


def check_renamed(source: str, package: str = PACKAGE, line_count: int | None = None) -> None:
    """Raise ``ValueError`` if ``source`` still imports a suite package by its checkout name (or moved lines)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        left = [n for n in names if _suite_root(n)]
        if left:
            raise ValueError(f"line {node.lineno}: still imports {', '.join(left)} (not renamed to {package}.*)")
    if line_count is not None and len(source.splitlines(keepends=True)) != line_count:
        raise ValueError("renaming moved lines")


class _RenamingLoader(importlib.machinery.SourceFileLoader):
    """Loads a checkout module under its installed name, renamed; writes no bytecode cache (the
    checkout's own ``__pycache__`` holds the un-renamed module's)."""

    def __init__(self, fullname: str, path: str, package: str):
        super().__init__(fullname, path)
        self.package = package

    def source_to_code(self, data, path, *, _optimize=-1):  # noqa: ANN001 - importlib's signature
        text = importlib.util.decode_source(data)
        return compile(rename_source(text, self.package), path, "exec", dont_inherit=True, optimize=_optimize)

    def path_stats(self, path):  # noqa: ANN001 - no stats: SourceLoader then neither reads nor writes a cache
        raise OSError("no bytecode cache for renamed modules")


class RenamingFinder(importlib.abc.MetaPathFinder):
    """``agentr1_gym.envs...`` (and adapters, baselines) from a checkout at ``root``, renamed on import.

    It answers only for names under ``agentr1_gym.``, so it can never shadow another distribution.
    """

    def __init__(self, root: str | Path, package: str = PACKAGE):
        self.root = Path(root)
        self.package = package

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - MetaPathFinder's signature
        head, _, rest = fullname.partition(".")
        if head != self.package or not rest or rest.split(".")[0] not in SUITE_PACKAGES:
            return None
        base = self.root.joinpath(*rest.split("."))
        if (base / "__init__.py").is_file():
            origin, locations = base / "__init__.py", [str(base)]
        elif base.with_suffix(".py").is_file():
            origin, locations = base.with_suffix(".py"), None
        elif base.is_dir():  # a data folder without ``__init__`` (a namespace package)
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(base)]
            return spec
        else:
            return None
        return importlib.util.spec_from_file_location(fullname, origin, submodule_search_locations=locations,
                                                      loader=_RenamingLoader(fullname, str(origin), self.package))


def install(root: str | Path, package: str = PACKAGE) -> None:
    """Put a ``RenamingFinder`` for the checkout at ``root`` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, RenamingFinder) and f.root == Path(root) for f in sys.meta_path):
        sys.meta_path.insert(0, RenamingFinder(root, package))

