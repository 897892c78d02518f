"""The commands' shared helper: --log-level, one logging setup, progress bars, user errors as one line."""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from envs.core import cli
from envs.core.data import DataError
from envs.core.registry import UnknownArgumentError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    monkeypatch.setattr(cli, "_level", cli._level)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    suite = {name: logging.getLogger(name).level for name in (*cli.SUITE_ROOTS, "__main__")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in suite.items():
        logging.getLogger(name).setLevel(value)


def test_the_suite_logs_at_the_chosen_level_and_other_libraries_from_warning(capsys):
    cli.setup_logging("debug")
    cli.setup_logging("info")  # again: replaces the handler, never stacks a second one
    assert sum(isinstance(h, cli._TqdmHandler) for h in logging.getLogger().handlers) == 1
    logging.getLogger("envs.qa.env").info("suite info")
    logging.getLogger("envs.qa.env").debug("suite debug")
    logging.getLogger("urllib3.connectionpool").info("library info")
    logging.getLogger("urllib3.connectionpool").warning("library warning")
    err = capsys.readouterr().err
    assert "INFO envs.qa.env: suite info" in err and "library warning" in err
    assert "suite debug" not in err and "library info" not in err


def test_progress_is_enabled_on_a_terminal_at_info(monkeypatch):
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", terminal)
    cli.setup_logging("info")
    assert cli.progress_enabled()
    cli.setup_logging("warning")
    assert not cli.progress_enabled()
    cli.setup_logging("info")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # piped into a log file: no bars
    assert not cli.progress_enabled()


def test_progress_bars_show_only_on_a_terminal_and_at_info():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    cli.setup_logging("info")
    shown, piped = Terminal(), io.StringIO()
    for out in (shown, piped):
        for _ in cli.progress(range(3), desc="work", file=out, mininterval=0):
            pass
    assert "work: 100%" in shown.getvalue() and piped.getvalue() == ""
    quiet = Terminal()
    cli.setup_logging("warning")
    list(cli.progress(range(3), file=quiet))
    list(cli.progress(range(3), file=quiet, enabled=False))
    assert quiet.getvalue() == ""
    assert not cli.progress(range(3), enabled=True, file=Terminal()).disable


@pytest.mark.parametrize("error, message", [
    (DataError("data.jsonl:3: field 'answer' is missing"), "data.jsonl:3: field 'answer' is missing"),
    (UnknownArgumentError("MathEnv got unknown keyword argument(s) 'typo'"), "unknown keyword argument(s) 'typo'"),
    (gym.error.NameNotFound("no environment named 'nope-v0'"), "no environment named 'nope-v0'"),
    (FileNotFoundError(2, "No such file or directory", "corpus.jsonl"), "No such file or directory: 'corpus.jsonl'"),
    (ModuleNotFoundError("No module named 'torch'", name="torch"), "pip install 'agentr1-gym[train]'"),
    (ModuleNotFoundError("No module named 'fastapi'", name="fastapi"), "pip install 'agentr1-gym[server]'"),
    (ModuleNotFoundError("No module named 'acme_extra'", name="acme_extra"), "an optional dependency"),
])
def test_user_errors_are_one_line(error, message):
    assert message in cli.user_error(error)
    assert "\n" not in cli.user_error(error)


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("x"), OSError("no file named"),
                                   ModuleNotFoundError("No module named 'envs.nope'", name="envs.nope")])
def test_bugs_keep_their_traceback(error):
    assert cli.user_error(error) is None


def test_cli_entry_prints_a_user_error_and_raises_a_bug(capsys):
    @cli.cli_entry
    def main(error: BaseException | None) -> int:
        if error is not None:
            raise error
        return 0

    assert main(None) == 0
    assert main(DataError("x.jsonl: no such file or directory")) == 2
    assert capsys.readouterr().err == "error: x.jsonl: no such file or directory\n"
    assert main(KeyboardInterrupt()) == 130
    with pytest.raises(ZeroDivisionError):
        main(ZeroDivisionError("a bug"))
    cli.setup_logging("debug")
    with pytest.raises(DataError):  # --log-level debug: the traceback of a user error too
        main(DataError("x"))


def test_log_level_flag_and_program_name(monkeypatch):
    parser = argparse.ArgumentParser()
    cli.add_logging_argument(parser)
    assert parser.parse_args([]).log_level == "info"
    assert parser.parse_args(["--log-level", "WARNING"]).log_level == "warning"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "loud"])
    monkeypatch.setattr(sys, "argv", ["/venv/bin/agentr1-openrlhf", "--env", "x"])
    assert cli.program_name("adapters.openrlhf") == "agentr1-openrlhf"
    monkeypatch.setattr(sys, "argv", ["/repo/adapters/openrlhf/__main__.py"])
    assert cli.program_name("adapters.openrlhf") == "python -m adapters.openrlhf"


def test_a_command_reports_a_data_error_in_one_line_and_debug_shows_the_traceback(tmp_path):
    command = [sys.executable, "-m", "adapters.openrlhf", "--env", "hotpotqa-v0", "--dry-run", "--output-dir",
               str(tmp_path), "--env-kwargs", '{"data_path": "%s"}' % (tmp_path / "missing.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert errors == [f"error: {tmp_path / 'missing.jsonl'}: no such file or directory"]
    done = subprocess.run([*command, "--log-level", "debug"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr and "DataError" in done.stderr


def test_a_command_piped_into_head_exits_quietly_when_head_stops_reading():
    # demo writes ~0.5 MB, far beyond a pipe's buffer, so it is still writing when head has gone
    writer = subprocess.Popen([sys.executable, "-m", "envs", "demo", "--env", "arithmetic-v0", "--episodes", "300"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()  # head holds the only read end
    head.communicate(timeout=120)
    errors = writer.stderr.read().decode()
    writer.stderr.close()
    assert writer.wait(timeout=120) == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors and "Exception ignored" not in errors


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback():
    code = ("import os\nfrom envs.core.cli import cli_entry\n"
            "@cli_entry\ndef main():\n    r, w = os.pipe()\n    os.close(r)\n    os.write(w, b'x')  # a dead child's pipe\n"
            "    return 0\nraise SystemExit(main())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "BrokenPipeError" in done.stderr
