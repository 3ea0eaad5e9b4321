"""The conformance-matrix command: one pytest run per engine, one Markdown table."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vllm_conformance.cli import main as cli
from pytest_vllm_conformance.report.matrix import LEGEND
from tests.fault_server import FaultServer


def test_the_matrix_puts_each_engine_in_a_column(
    fault: FaultServer,
    second_fault: FaultServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = second_fault
    broken.faults = {"stream_no_done"}
    out = tmp_path / "matrix.md"
    assert (
        cli(
            [
                "matrix",
                "--engine",
                f"good={fault.url} -m streaming",
                "--engine",
                f"bad={broken.url} -m streaming",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = out.read_text()
    assert table == capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0] == "| check | good | bad |"
    assert (
        "| `test_streaming::test_stream_ends_with_done[chat]` | pass | "
        "FAIL: Stream does not end with [DONE] |"
    ) in lines
    assert lines[-3] == (
        "| **total** | 31 pass / 0 FAIL / 0 skip / 0 n/s | 25 pass / 6 FAIL / 0 skip / 0 n/s |"
    )
    assert lines[-2:] == ["", LEGEND]  # issue 17: capabilities (n/s, not supported)


def test_a_bad_engine_spec_is_one_clear_line() -> None:
    with pytest.raises(SystemExit, match="--engine must be NAME=URL"):
        cli(["matrix", "--engine", "no-url-here"])


def test_an_unreachable_engine_says_why() -> None:
    with pytest.raises(
        SystemExit,
        match=r"the run for gone produced no results: ERROR: nothing "
        r"answers at http://127\.0\.0\.1:9",
    ):
        cli(["matrix", "--engine", "gone=http://127.0.0.1:9"])
