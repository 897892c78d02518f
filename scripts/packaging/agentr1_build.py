"""The build backend of agentr1-gym: setuptools, with the suite's packages installed as ``agentr1_gym.*``.

* ``build_wheel`` / ``build_sdist`` are setuptools' own. ``setup.py`` passes ``setup_arguments()``:
  the checkout's ``envs/``, ``adapters/`` and ``baselines/`` become ``agentr1_gym/envs/``, ... and
  ``BuildPy`` renames the suite's references to itself as it copies them (``agentr1_rename``), so a
  wheel writes nothing but ``agentr1_gym/`` and its ``.dist-info`` into site-packages.
* ``build_editable`` (PEP 660) writes a small wheel of its own: ``agentr1_gym/__init__.py`` puts a
  finder on ``sys.meta_path`` that imports the checkout's modules as ``agentr1_gym.*``, renamed as
  they load (``agentr1_rename.RenamingFinder``). It answers for nothing outside ``agentr1_gym``, so
  an editable install shadows no other distribution either (setuptools' own editable modes would
  put the top-level folders on the path).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools import find_packages
from setuptools.build_meta import (  # noqa: F401 - the PEP 517 hooks this backend keeps as they are
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)
from setuptools.command.build_py import build_py

from agentr1_rename import INIT_SOURCE, PACKAGE, SUITE_PACKAGES, rename_source, rename_text

# package data: shipped samples, presets, templates (tests/packaging checks that every non-Python file ships)
DATA_PATTERNS = [f"**/*.{ext}" for ext in ("json", "jsonl", "yaml", "yml", "txt", "md", "csv", "tsv", "html", "css",
                                          "js", "svg", "png", "j2", "jinja", "typed")]
RENAMED_DATA_SUFFIXES = (".yaml", ".yml")  # data that names modules (verl's ``_target_``); datasets stay verbatim


def setup_arguments() -> dict:
    """``setup()`` keyword arguments: the suite's packages under ``agentr1_gym``, their data, ``BuildPy``."""
    found = find_packages(include=[*SUITE_PACKAGES, *(f"{p}.*" for p in SUITE_PACKAGES)])
    return {
        "packages": [f"{PACKAGE}.{name}" for name in found],
        "package_dir": {f"{PACKAGE}.{p}": p for p in SUITE_PACKAGES},
        "package_data": {f"{PACKAGE}.{p}": DATA_PATTERNS for p in SUITE_PACKAGES},
        "cmdclass": {"build_py": BuildPy},
    }


class BuildPy(build_py):
    """``build_py`` that renames what it copies and writes ``agentr1_gym/__init__.py``."""

    def run(self) -> None:
        shutil.rmtree(Path(self.build_lib) / PACKAGE, ignore_errors=True)  # no stale modules of an earlier build
        super().run()
        init = Path(self.build_lib) / PACKAGE / "__init__.py"
        init.write_text(INIT_SOURCE.format(preamble=""), encoding="utf-8")

    def build_module(self, module, module_file, package):  # noqa: ANN001, ANN201 - distutils' signature
        outfile, copied = super().build_module(module, module_file, package)
        path = Path(outfile)
        path.write_text(rename_source(path.read_text(encoding="utf-8")), encoding="utf-8")
        return outfile, copied

    def build_package_data(self) -> None:
        super().build_package_data()
        for _package, _src_dir, build_dir, filenames in self.data_files:
            for name in filenames:
                path = Path(build_dir, name)
                if path.suffix in RENAMED_DATA_SUFFIXES:
                    path.write_text(rename_text(path.read_text(encoding="utf-8")), encoding="utf-8")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PACKAGE / "__init__.py")]


# An editable install's ``agentr1_gym/__init__.py`` loads the checkout's own renaming module (so a change to
# it needs no reinstall) and puts its finder over the checkout on ``sys.meta_path``.
EDITABLE_PREAMBLE = """
import importlib.util as _util
import sys as _sys

_spec = _util.spec_from_file_location("agentr1_gym._rename", {rename!r})
_rename = _sys.modules["agentr1_gym._rename"] = _util.module_from_spec(_spec)
_spec.loader.exec_module(_rename)
_rename.install({root!r})  # this checkout: an editable install of it
"""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_editable(wheel_directory, config_settings=None, metadata_directory=None) -> str:  # noqa: ANN001
    """PEP 660: a wheel with the metadata, entry points and the renaming finder over this checkout."""
    root = Path.cwd().resolve()
    with tempfile.TemporaryDirectory() as tmp:
        if metadata_directory is None:  # else it is the .dist-info folder the frontend had prepared
            metadata_directory = Path(tmp, _setuptools.prepare_metadata_for_build_editable(tmp, config_settings))
        dist_info = Path(metadata_directory)
        files: dict[str, bytes] = {f"{PACKAGE}/__init__.py": INIT_SOURCE.format(preamble=EDITABLE_PREAMBLE.format(
            rename=str(Path(__file__).resolve().with_name("agentr1_rename.py")), root=str(root))).encode()}
        for path in sorted(dist_info.rglob("*")):
            if path.is_file() and path.name not in ("RECORD", "WHEEL"):
                files[f"{dist_info.name}/{path.relative_to(dist_info).as_posix()}"] = path.read_bytes()
        files[f"{dist_info.name}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: agentr1_build\n"
                                            b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        record = [_record_line(name, data) for name, data in files.items()] + [f"{dist_info.name}/RECORD,,"]
        files[f"{dist_info.name}/RECORD"] = ("\n".join(record) + "\n").encode()
        wheel_name = f"{dist_info.name.removesuffix('.dist-info')}-py3-none-any.whl"
        with zipfile.ZipFile(Path(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as wheel:
            for name, data in files.items():
                wheel.writestr(name, data)
    return wheel_name
