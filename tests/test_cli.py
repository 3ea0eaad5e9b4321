"""The ``vllm-conformance`` command: its subcommands, and the old ``python -m`` spellings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_conformance.cli import main
from pytest_vllm_conformance.perf.locust import LOCUSTFILE


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("certify", "verify", "matrix", "load", "checks", "options"):
        assert command in out


def test_load_path_prints_the_locustfile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(LOCUSTFILE)


def test_load_without_a_prefix_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["load"])
    assert exit_.value.code == 2


def test_only_certify_takes_options_after_the_separator() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["load", "--path", "--", "-x"])
    assert exit_.value.code == 2


def test_verify_reports_a_folder_that_is_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path)]) == 1
    assert "SHA256SUMS is missing" in capsys.readouterr().out


def test_the_module_paths_run_their_subcommands() -> None:
    """`python -m` on a subcommand's module runs it (the pre-redesign `python -m
    pytest_vllm_conformance.matrix`, `.load` and `.certify` are gone)."""
    locust = _run("-m", "pytest_vllm_conformance.perf.locust", "--path")
    assert locust.returncode == 0 and locust.stdout.strip() == str(LOCUSTFILE)
    matrix = _run("-m", "pytest_vllm_conformance.report.matrix", "--engine", "no-url-here")
    assert matrix.returncode == 1 and "--engine must be NAME=URL" in matrix.stderr
    certify = _run("-m", "pytest_vllm_conformance.report.certify", "verify", "/nonexistent")
    assert certify.returncode == 1 and "not a certification bundle" in certify.stdout


def test_checks_prints_the_registry_without_the_fault_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped command has no bite table (the project's tests are not installed): it
    leaves out the fault column and says where to find it."""
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Checks\n")
    assert "| Check | Verdicts (severity) | Called from |\n" in out
    assert "Fails on the fault" not in out and "tests.test_checks_bite" not in out
    assert "the project's docs/checks.md adds the fault that proves each check" in out
    assert "`answers.answer_conforms`" in out


def test_options_prints_the_option_table(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_vllm_conformance.config import render_options_markdown

    assert main(["options"]) == 0
    assert capsys.readouterr().out == render_options_markdown()
