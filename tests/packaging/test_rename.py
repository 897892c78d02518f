"""Renaming the suite's references to itself for installation (scripts/packaging/agentr1_rename.py)."""

from __future__ import annotations

import ast
import sys
import textwrap
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "packaging"))  # the build backend's folder
from agentr1_rename import RenamingFinder, check_renamed, rename_source, rename_text  # noqa: E402

SOURCE = textwrap.dedent('''\
    """See ``envs.core.data`` and python -m adapters.openrlhf."""
    import os, envs
    import envs.core.data
    import envs.core as core
    from envs.core import (DataError,
        TextEnv)
    from baselines.grpo.config import GRPOConfig
    import numpy, envsx
    from . import sibling


    def f(name):
        import envs
        entry = "envs.qa.env:HotpotQAEnv"
        module = f"envs.{name}"
        mixed = f"{envs.__name__} adapters.trl {{envs.x}} {name!r:>3}"
        prose = "the suite's envs. Done; envs/data/x.jsonl; my_envs.x; agentr1_gym.envs"
        return envs.core.data.DataError
    ''')

RENAMED = textwrap.dedent('''\
    """See ``agentr1_gym.envs.core.data`` and python -m agentr1_gym.adapters.openrlhf."""
    import os; from agentr1_gym import envs
    __import__('agentr1_gym.envs.core.data'); from agentr1_gym import envs
    import agentr1_gym.envs.core as core
    from agentr1_gym.envs.core import (DataError,
        TextEnv)
    from agentr1_gym.baselines.grpo.config import GRPOConfig
    import numpy, envsx
    from . import sibling


    def f(name):
        from agentr1_gym import envs
        entry = "agentr1_gym.envs.qa.env:HotpotQAEnv"
        module = f"agentr1_gym.envs.{name}"
        mixed = f"{envs.__name__} agentr1_gym.adapters.trl {{agentr1_gym.envs.x}} {name!r:>3}"
        prose = "the suite's envs. Done; envs/data/x.jsonl; my_envs.x; agentr1_gym.envs"
        return envs.core.data.DataError
    ''')


def test_imports_strings_and_fstrings_are_renamed_in_place():
    assert rename_source(SOURCE) == RENAMED
    assert rename_source(RENAMED) == RENAMED  # idempotent: a second build step changes nothing


def test_yaml_data_is_renamed_and_leftovers_are_caught():
    assert rename_text("_target_: adapters.verl.agent_loop.Loop\npath: envs/data\n") == \
        "_target_: agentr1_gym.adapters.verl.agent_loop.Loop\npath: envs/data\n"
    with pytest.raises(ValueError, match="still imports envs.core"):
        check_renamed("import os\nfrom envs.core import X\n")
    with pytest.raises(ValueError, match="moved lines"):
        check_renamed("import os\n", line_count=2)


_MODULE = st.lists(st.sampled_from(["envs", "adapters", "baselines", "core", "qa", "env", "numpy", "data"]),
                   min_size=1, max_size=4).map(".".join)
_TEXT = st.text(alphabet=st.sampled_from(list("envsadptrbl.:/ {}_-x\n")), max_size=40)


@st.composite
def _modules(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["import", "import_as", "from", "string", "fstring", "call"]))
        name = draw(_MODULE)
        if kind == "import":
            lines.append(f"import {name}")
        elif kind == "import_as":
            lines.append(f"import {name} as alias_{len(lines)}")
        elif kind == "from":
            lines.append(f"from {name} import (a,\n    b)")
        elif kind == "string":
            lines.append(f"s = {draw(_TEXT)!r}")
        elif kind == "fstring":
            text = draw(_TEXT).replace("{", "{{").replace("}", "}}")
            lines.append(f"s = f\"\"\"{text}{{x}}{name}\"\"\"")
        else:
            lines.append(f"x = {name}")
    return "\n".join(lines) + "\n"


@given(_modules())
def test_renaming_keeps_lines_code_and_every_other_module_name(source):
    renamed = rename_source(source)
    assert rename_source(renamed) == renamed
    assert renamed.count("\n") == source.count("\n")  # tracebacks keep the checkout's line numbers
    check_renamed(renamed)
    before, after = ast.parse(source), ast.parse(renamed)
    # code outside imports and strings is never touched (``__import__`` is how ``import envs.x`` is renamed)
    plain = lambda tree: [ast.dump(n) for n in ast.walk(tree)  # noqa: E731
                          if isinstance(n, ast.Name | ast.Attribute) and getattr(n, "id", "") != "__import__"]
    assert plain(before) == plain(after)
    others = lambda tree: sorted(a.name for n in ast.walk(tree) if isinstance(n, ast.Import)  # noqa: E731
                                 for a in n.names if a.name.split(".")[0] not in ("envs", "adapters", "baselines"))
    assert others(before) == [n for n in others(after) if not n.startswith("agentr1_gym.")]


def test_the_finder_imports_a_checkout_under_the_installed_name(tmp_path, monkeypatch):
    pkg = tmp_path / "envs"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "sample.json").write_text("{}")
    (pkg / "__init__.py").write_text("from envs.tools import helper\nENTRY = 'envs.tools:helper'\n")
    (pkg / "tools.py").write_text("import envs\n\ndef helper():\n    return envs.__name__\n")
    monkeypatch.setitem(sys.modules, "fakegym", types.ModuleType("fakegym"))
    sys.modules["fakegym"].__path__ = []
    finder = RenamingFinder(tmp_path, package="fakegym")
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        import fakegym.envs as installed

        assert installed.helper() == "fakegym.envs" and installed.ENTRY == "fakegym.envs.tools:helper"
        assert installed.__file__ == str(pkg / "__init__.py")  # tracebacks point at the checkout
        import fakegym.envs.data

        assert list(fakegym.envs.data.__path__) == [str(pkg / "data")]
        assert finder.find_spec("envs.tools") is None and finder.find_spec("fakegym.other") is None
        assert not list(tmp_path.rglob("*.pyc"))  # the checkout's bytecode cache holds only its own modules
    finally:
        for name in [m for m in sys.modules if m.startswith("fakegym.")]:
            del sys.modules[name]
