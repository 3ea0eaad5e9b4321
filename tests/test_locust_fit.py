"""Load runs fit the server: a class whose endpoint is not served stays idle and is named in
the report; the same failure repeated makes users back off instead of hammering."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.cli import main as cli
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf.locust import LOCUSTFILE, fit
from pytest_vllm_conformance.perf.locust.fit import Backoff, refused_as_is, said, server_message
from pytest_vllm_conformance.perf.locust.report import read
from pytest_vllm_conformance.target.local import free_port
from tests.fault_server import FaultServer
from tests.test_locust import CHAT, locust

NOT_SERVED = "POST /v1/embeddings answered HTTP 501: This server does not serve embeddings"


def _sent(fault: FaultServer, before: Counter[str], path: str) -> int:
    return fault.hits_by_path[path] - before[path]


def test_a_class_whose_endpoint_is_not_served_sends_only_its_probe(
    fault: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault.faults = {"embeddings_not_served"}
    before = fault.hits_by_path.copy()
    out = locust(fault.url, seconds=4, users=6, cwd=tmp_path)  # no class named: all three
    report = read(tmp_path / "run")
    assert _sent(fault, before, "/v1/embeddings") == 1, fault.hits_by_path  # 2 users, 1 probe
    assert report.not_run == {"EmbeddingsUser": NOT_SERVED}, report.markdown()
    for kind, name in (("POST", "/v1/completions"), ("POST", f"{CHAT} (stream)")):
        entry = report.entry(kind, name)
        assert entry and entry.summary.count > 0 and entry.failures == 0, report.markdown()
    assert not report.failures and report.totals()[1] == 0, report.markdown()
    assert report.entry("POST", "/v1/embeddings") is None
    assert out.stderr.count("EmbeddingsUser does not run") == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr
    assert cli(["load", str(tmp_path / "run"), "--json", str(tmp_path / "r.json")]) == 0
    assert f"- EmbeddingsUser: not run: {NOT_SERVED}" in capsys.readouterr().out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["not_run"] == [{"user_class": "EmbeddingsUser", "reason": NOT_SERVED}]
    assert all(e["type"] != "NOT RUN" for e in doc["entries"])


def test_a_refused_key_idles_every_class_with_its_reason(
    fault: FaultServer, tmp_path: Path
) -> None:
    fault.api_key = "sk-right"
    before = fault.hits_by_path.copy()
    out = locust(
        fault.url,
        "--vllm-model",
        "fault-model",
        "--vllm-embedding-model",
        "fault-model",
        seconds=3,
        users=3,
        cwd=tmp_path,
        env={"VLLM_API_KEY": "sk-wrong"},
    )
    report = read(tmp_path / "run")
    assert set(report.not_run) == {"CompletionsUser", "StreamingChatUser", "EmbeddingsUser"}
    assert all("HTTP 401: Incorrect API key provided" in r for r in report.not_run.values())
    sent = sum(fault.hits_by_path.values()) - sum(before.values())
    assert sent == 3, fault.hits_by_path  # one probe per class
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_the_same_failure_repeated_backs_off(fault: FaultServer, tmp_path: Path) -> None:
    fault.faults = {"completions_500"}
    before = fault.hits_by_path.copy()
    out = locust(fault.url, "CompletionsUser", seconds=6, users=2, cwd=tmp_path)
    sent = _sent(fault, before, "/v1/completions")
    report = read(tmp_path / "run")
    assert {f["Error"] for f in report.failures} == {"HTTP 500: internal failure"}
    assert not report.not_run  # a 500 may pass: the class runs, and backs off
    # a closed loop sends thousands in 6 s; backing off from 0.25 s up, each user ~7
    assert 4 <= sent <= 40, sent
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_each_worker_probes_once(fault: FaultServer, tmp_path: Path) -> None:
    fault.faults = {"embeddings_not_served"}
    port = free_port()
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master-port", str(port)]
    classes = ["CompletionsUser", "EmbeddingsUser"]
    workers = [
        subprocess.Popen(
            [*common, "--worker", "--master-host", "127.0.0.1", *classes],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        before = fault.hits_by_path.copy()
        master = subprocess.run(
            [
                *common,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--headless",
                "--expect-workers",
                "2",
                "--expect-workers-max-wait",
                "30",
                "-u",
                "8",
                "-r",
                "8",
                "-t",
                "4s",
                "--csv",
                str(tmp_path / "run"),
                "--host",
                fault.url,
                *classes,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
        )
        for w in workers:
            w.wait(timeout=30)
    finally:
        for w in workers:
            w.kill()
    assert "2 workers connected" in master.stderr, master.stderr[-2000:]
    assert 1 <= _sent(fault, before, "/v1/embeddings") <= 2  # at most one per worker
    report = read(tmp_path / "run")
    assert report.not_run == {"EmbeddingsUser": NOT_SERVED}, report.markdown()
    completions = report.entry("POST", "/v1/completions")
    assert completions and completions.summary.count > 0 and completions.failures == 0


def test_backoff_pauses_only_while_the_same_failure_repeats() -> None:
    backoff = Backoff(first_s=0.25, cap_s=2.0)
    pauses = [backoff.after("HTTP 500: x") for _ in range(7)]
    assert pauses == [0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert backoff.after("HTTP 503: y") == 0.0  # a different failure starts over
    assert backoff.after("HTTP 503: y") == 0.25
    assert backoff.after(None) == 0.0 and backoff.after("HTTP 503: y") == 0.0
    for _ in range(5000):  # no overflow however long it lasts
        assert backoff.after("HTTP 503: y") <= 2.0


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (400, True),
        (401, True),
        (404, True),
        (501, True),
        (408, False),
        (429, False),
        (500, False),
        (503, False),
        (200, False),
    ],
)
def test_which_answers_mean_the_class_cannot_run(status: int, refused: bool) -> None:
    assert refused_as_is(status) is refused


def test_server_text_is_one_safe_bounded_line() -> None:
    assert said("a\x1b]0;pwned\x07\nb") == "a\\x1b]0;pwned\\x07\\nb"
    assert said("x" * 1000, 10) == "x" * 10 + "... (990 more characters)"
    nested = "[" * 100_000 + "]" * 100_000
    assert server_message(nested, "Bad Request").startswith("[[[")
    assert server_message('{"error": {"message": "no\\u001b[31m"}}', "") == "no\\x1b[31m"
    assert server_message("", "Not Implemented") == "Not Implemented"


# issue 14: every server value validated before use (locust reads answers through fit)
@pytest.mark.parametrize(
    ("fault_name", "args", "name", "said"),
    [
        (
            "models_data_not_list",
            (),
            "/v1/models",
            "/v1/models lists no model (pass --vllm-model): Response body has the wrong shape at "
            "$.data: expected a list, received an integer",
        ),
        (
            "usage_list",
            ("--vllm-model", "fault-model"),
            "/v1/completions",
            "Response body has the wrong shape at $.usage: expected an object, received a list",
        ),
    ],
)
def test_a_malformed_answer_is_a_failure_entry_not_a_traceback(
    fault: FaultServer, tmp_path: Path, fault_name: str, args: tuple[str, ...], name: str, said: str
) -> None:
    fault.faults = {fault_name}
    out = locust(fault.url, "CompletionsUser", *args, seconds=3, users=2, cwd=tmp_path)
    report = read(tmp_path / "run")
    errors = {(f["Name"], f["Error"]) for f in report.failures}
    assert len(errors) == 1, report.markdown()
    ((where, error),) = errors
    assert where == name and error == said, error
    # the same failure repeated backs off: a closed loop sends hundreds in 3 s
    assert sum(int(f["Occurrences"]) for f in report.failures) <= 40, report.markdown()
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert out.returncode == 1


@pytest.mark.parametrize(
    ("body", "read", "said"),
    [
        (b"{not json", fit.completion_tokens, "Response body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, fit.first_model_id, "Response body is not JSON"),
        (b'{"usage": {"completion_tokens": 1e400}}', fit.completion_tokens, "wrong shape"),
        (b'{"usage": {"completion_tokens": -2}}', fit.completion_tokens, "non-negative"),
        (b'{"choices": []}', fit.completion_tokens, "no usage"),
        (b'{"data": [{"id": 5}]}', fit.first_model_id, "$.data[0].id"),
        (b'{"data": "x"}', fit.embeddings_data, "$.data"),
    ],
)
def test_answers_are_read_with_every_value_checked(body: bytes, read: Any, said: str) -> None:
    with pytest.raises(CheckFailure) as caught:
        read(body)
    assert said in fit.malformed(caught.value)
    assert "\n" not in fit.malformed(caught.value)


def test_sound_answers_are_read() -> None:
    assert fit.first_model_id(b'{"data": [{"id": "m"}]}') == "m"
    assert fit.completion_tokens(b'{"usage": {"completion_tokens": 3}}') == 3
    assert fit.embeddings_data(b'{"data": [{}]}') == [{}]


# issue 14 review: one escaper for the locust path, which also redacts the key
def test_the_key_reaches_no_locust_output(fault: FaultServer, tmp_path: Path) -> None:
    """The server echoes the key in every error: a NOT RUN reason (an embedding model it does
    not serve) and failures (max_tokens past the context) quote those errors, yet the key is
    in no console line, CSV or report."""
    key = "sk-conformance-secret-0123456789"
    fault.api_key, fault.faults = key, {"echo_key_everywhere"}
    out = locust(
        fault.url,
        "--vllm-embedding-model",
        "nope",
        "--vllm-max-tokens",
        "100000",
        seconds=3,
        users=3,
        cwd=tmp_path,
        env={"VLLM_API_KEY": key},
    )
    report = read(tmp_path / "run")
    assert "EmbeddingsUser" in report.not_run and report.failures, report.markdown()
    assert "***" in report.not_run["EmbeddingsUser"], report.not_run
    assert cli(["load", str(tmp_path / "run"), "--json", str(tmp_path / "r.json")]) in (0, 1)
    written = [f.read_text(errors="replace") for f in tmp_path.iterdir() if f.is_file()]
    assert len(written) >= 3, list(tmp_path.iterdir())
    for text in (out.stdout, out.stderr, report.markdown(), *written):
        assert key not in text and key[:12] not in text and key[-12:] not in text
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
