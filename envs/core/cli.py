"""What every command line of the suite shares: ``--log-level``, one logging setup, progress bars
where a person waits, and user errors as one line.

    @cli_entry
    def main(argv=None) -> int:
        parser = argparse.ArgumentParser(prog=program_name("envs.math"))
        add_logging_argument(parser)
        args = parser.parse_args(argv)
        setup_logging(args.log_level)
        for item in progress(items, desc="validating"): ...

``cli_entry`` turns a user error (a ``DataError``, an unknown env, a bad file, an unknown env
argument, a missing optional extra) into ``error: <message>`` and exit status 2 (argparse's for a
usage error); a bug keeps its traceback, and so does every error under ``--log-level debug``. A
reader that stops reading (``python -m envs list | head -3``) ends the command quietly, status 0.
Library code configures no logging and shows no progress bar unless its caller asks (a
``progress=`` argument, which a command sets to ``progress_enabled()``).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import re
import select
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym

from envs.core.data import DataError
from envs.core.layout import INSTALLED_PACKAGE, SUITE_ROOTS
from envs.core.registry import UnknownArgumentError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DISTRIBUTION = "agentr1-gym"
# import names whose distribution is named otherwise
_DISTRIBUTION_OF = {"jnius": "pyjnius", "hydra": "hydra-core", "sklearn": "scikit-learn", "yaml": "pyyaml"}

_level = logging.WARNING  # what setup_logging last set for the suite's loggers
F = TypeVar("F", bound=Callable[..., int])


def add_logging_argument(parser: argparse.ArgumentParser, default: str = "info") -> None:
    """``--log-level`` (``debug`` also shows the traceback of a user error)."""
    parser.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=default,
                        help=f"the suite's log messages from this level on (default {default}); "
                             "debug also shows tracebacks; progress bars show at info and below, on a terminal")


def setup_logging(level: str | int = "info") -> None:
    """One handler and format for the suite's loggers at ``level``; other libraries' from WARNING on.

    Records go through ``tqdm.write``, so they never break a progress bar. Calling it again replaces
    the earlier setup.
    """
    global _level
    _level = level if isinstance(level, int) else logging.getLevelName(level.upper())
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _TqdmHandler)]:
        root.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(max(_level, logging.WARNING))
    for name in (*SUITE_ROOTS, "__main__"):
        logging.getLogger(name).setLevel(_level)


class _TqdmHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (wherever it is redirected now), around any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, but never breaking a line inside a hyphenated name (``deepseek-ai/...``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def progress_enabled() -> bool:
    """Whether a command shows progress bars: on a terminal (stderr), at ``--log-level info`` or below.

    Pass it on as the ``progress=`` / ``show_progress=`` of library code, whose bars (bm25s's too)
    would otherwise also write into a log file.
    """
    return _level <= logging.INFO and sys.stderr.isatty()


def progress(iterable: Iterable[Any] | None = None, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """A tqdm bar (on stderr unless ``file=``), shown when ``enabled`` (default: ``--log-level`` info or
    below) and its file is a terminal; otherwise a silent one (``bar.disable`` is then true)."""
    from tqdm import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    shown = _level <= logging.INFO if enabled is None else enabled
    return tqdm(iterable, disable=None if shown else True, **kwargs)  # None: tqdm's own check for a terminal


def echo(text: str = "") -> None:
    """Print a line of a command's output (stdout) without breaking a progress bar on stderr."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)


def program_name(module: str) -> str:
    """``python -m <module>`` when run that way; the console script's name (``agentr1-gym``) when run as one."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return f"python -m {module}" if not script or script.endswith(".py") or script == "-c" else script


def user_error(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix; ``None`` for a bug (keep its traceback)."""
    if isinstance(exc, DataError | UnknownArgumentError | gym.error.Error):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:  # a file the user named
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        module = exc.name.split(".")[0]
        if module in (*SUITE_ROOTS, INSTALLED_PACKAGE):  # the suite's own module: a bug
            return None
        extra = optional_extra(module)
        hint = f"pip install '{DISTRIBUTION}[{extra}]'" if extra else "an optional dependency; see docs/install.md"
        return f"{exc} ({hint})"
    return None


def optional_extra(module: str) -> str | None:
    """The extra of this distribution that installs ``module`` (from the installed metadata), if any."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = _normalize(_DISTRIBUTION_OF.get(module, module))
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9._-]+).*extra\s*==\s*['\"]([\w.-]+)['\"]", requirement)
        if match and _normalize(match[1]) == wanted:
            return match[2]
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cli_entry(main: F) -> F:
    """Wrap a command's ``main``: a user error prints one line (exit status 2), Ctrl-C exits with 130."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            status = main(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is caught below
            return status
        except BrokenPipeError:
            if not _stdout_reader_gone():  # a socket or a child's pipe: not the reader of our output
                raise
            _discard_stdout()
            return 0
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)  # noqa: T201 - a command's output
            return 130
        except Exception as exc:
            message = user_error(exc)
            if message is None or _level <= logging.DEBUG:
                raise
            print(f"error: {message}", file=sys.stderr)  # noqa: T201 - a command's output
            return 2

    return run  # type: ignore[return-value]


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or terminal) whose reader has gone away, as after ``| head``."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream, or closed
        return False
    if not hasattr(select, "poll"):  # Windows: a BrokenPipeError in a command is its stdout's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's final flush of what is left cannot fail
    (the pattern of Python's signal documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
