"""Secrets and untrusted text in every output (issue 14).

A hostile server echoes the key everywhere it can, names its model with terminal escape
sequences or a lone surrogate, or lists 10,000 models. Whatever it sends, the key appears in
no output (terminal, JUnit, results.json, report.html, metrics.txt), no raw control byte
reaches the terminal or a report, every writer writes, and long text is cut with a count.
A local test file next to the bundled suites carries the server's text into every path a
report takes: a check failure, a plain assertion, a skip reason, a property, captured
output and a warning.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.fault_server import FaultServer

#: Long like a real project key, with characters that URL-encoding and JSON spell otherwise.
KEY = "sk-proj-" + "Zq7/Hx+Wv3" * 14 + "-distinct-tail-91c"
HOSTILE = '''
import warnings

import pytest

from pytest_vllm_conformance.failures import CheckFailure


@pytest.fixture(scope="module")
def text(vllm_client, vllm_target):
    """Everything a server controls: its model id, /version, /v1/models, an error, headers."""
    models = vllm_client.get("/v1/models")
    version = vllm_client.get("/version")
    error = vllm_client.post("/v1/chat/completions", {"model": "no-such-model", "messages": []})
    return " | ".join([vllm_target.model, vllm_target.engine.describe(),
                       models.body.decode("utf-8", "replace"),
                       version.body.decode("utf-8", "replace"), error.error_message(),
                       str(sorted(error.headers.items()))])


def test_a_check_fails_quoting_the_server(text):
    raise CheckFailure("Hostile " + text[:40], expected=text, received=text, detail=text)


def test_an_assertion_quotes_the_server(text):
    assert not text, text


def test_a_skip_reason_quotes_the_server(text):
    pytest.skip(text)


def test_a_property_output_and_warning_quote_the_server(text, record_property):
    record_property("hostile", text)
    record_property("measured", float("nan"))  # a server's NaN, as a measurement
    print(text.replace("\\n", " "))  # the test's own output may have lines; not one forged
    warnings.warn(UserWarning(text))
'''
SUITES = [
    "test_health.py",
    "test_compliance.py::test_completions_match_the_schema",
    "test_streaming.py::test_stream_ends_with_done",
    "test_metrics.py::test_metrics_parse_as_prometheus_text",
]
OUTPUTS = ("reports/results.json", "reports/report.html", "reports/metrics.txt", "junit.xml")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_hostile=HOSTILE)
    return pytester.runpytest(
        "test_hostile.py",
        *args,
        "--junitxml=junit.xml",
        "-rA",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    )


def _written(pytester: pytest.Pytester) -> dict[str, str]:
    """Every output file, each checked readable and valid for its format."""
    texts = {name: (pytester.path / name).read_text(encoding="utf-8") for name in OUTPUTS}
    json.loads(texts["reports/results.json"], parse_constant=pytest.fail)  # no bare NaN
    ET.fromstring(texts["junit.xml"])
    assert texts["reports/report.html"].startswith("<!doctype html>")
    assert "# EOF" in texts["reports/metrics.txt"]
    return texts


def _everything(pytester: pytest.Pytester, result: pytest.RunResult) -> str:
    files = [
        p.read_text(encoding="utf-8", errors="backslashreplace")
        for p in pytester.path.rglob("*")
        if p.is_file() and p.name != "test_hostile.py"
    ]
    return "\n".join([result.stdout.str(), result.stderr.str(), *files])


def test_the_key_appears_in_no_output(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"echo_key_everywhere", "error_shape", "stream_text_differs"}
    fault.api_key = KEY
    result = _run(
        pytester,
        f"--vllm-url={fault.url}",
        f"--vllm-api-key={KEY}",
        *SUITES,
        "test_errors.py",
        "test_compliance.py::test_streamed_text_equals_non_streamed_text",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    _written(pytester)
    everything = _everything(pytester, result)
    assert "***" in everything  # the key was echoed, and redacted
    for form in (KEY, quote(KEY, safe=""), KEY[:12], KEY[-12:], json.dumps(KEY)[1:-1]):
        assert form not in everything, form


def test_the_key_appears_in_no_output_under_xdist(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """Workers make their reports safe before they travel; the controller writes them."""
    fault.faults = {"echo_key_everywhere", "error_shape"}
    fault.api_key = KEY
    pytester.makepyfile(test_hostile=HOSTILE)
    result = pytester.runpytest_subprocess(
        "test_hostile.py",
        f"--vllm-url={fault.url}",
        f"--vllm-api-key={KEY}",
        "test_errors.py::test_the_api_key_is_enforced",
        "--junitxml=junit.xml",
        "-rA",
        "-n",
        "2",
        "-p",
        "xdist",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    _written(pytester)
    everything = _everything(pytester, result)
    assert "***" in everything
    for form in (KEY, quote(KEY, safe=""), KEY[:12], KEY[-12:]):
        assert form not in everything, form


def test_escape_sequences_in_a_model_id_stay_escaped(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"model_id_escapes"}
    result = _run(pytester, f"--vllm-url={fault.url}", *SUITES)
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 2 and "errors" not in outcomes, outcomes  # the hostile file's
    texts = _written(pytester)
    terminal = result.stdout.str() + result.stderr.str()
    for name, text in [("terminal", terminal), *texts.items()]:
        assert "\x1b" not in text and "\x07" not in text, name
    for name, text in [("terminal", terminal), ("metrics", texts["reports/metrics.txt"])]:
        assert not re.search("^FORGED", text, re.M), name  # a line of its own: forged
    assert "fault-model\\x1b[31m-red" in result.stdout.str()
    doc = json.loads(texts["reports/results.json"])
    assert doc["target"]["model"].startswith("fault-model\\x1b[31m-red\\x1b[0m\\x1b]0;PWNED")
    assert "fault-model\\x1b[31m-red" in texts["reports/report.html"]


def test_a_lone_surrogate_breaks_no_writer(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"model_id_surrogate"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        *SUITES,
        "--junitxml=junit.xml",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    texts = _written(pytester)
    assert json.loads(texts["reports/results.json"])["target"]["model"] == "fault-model-\\ud800"
    assert "fault-model-\\ud800" in texts["reports/report.html"]
    assert 'model_id="fault-model-\\\\ud800"' in texts["reports/metrics.txt"]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_hostile_run_still_writes_everything(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"model_id_surrogate"}
    result = _run(pytester, f"--vllm-url={fault.url}", "test_health.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the hostile file's two failures only
    _written(pytester)


def test_a_long_listing_is_cut_with_a_count(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"models_10000"}
    result = _run(pytester, f"--vllm-url={fault.url}")
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    texts = _written(pytester)
    terminal = result.stdout.str()
    assert "more characters)" in terminal
    assert len(terminal) < 120_000, len(terminal)  # the listing alone is 540 KB
    for name, text in texts.items():
        assert len(text) < 200_000, (name, len(text))
    doc = json.loads(texts["reports/results.json"])
    failed = [t for t in doc["tests"] if t["failure"]]
    assert all("more characters)" in t["failure"]["received"] for t in failed), failed
    recorded = next(t for t in doc["tests"] if "measured" in t["properties"])["properties"]
    assert recorded["measured"] is None and "more characters)" in recorded["hostile"]


def test_an_unserved_model_among_10000_is_one_bounded_error(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"models_10000"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "--vllm-model=not-served", "test_health.py"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert "does not serve model 'not-served'" in error and "more characters)" in error
    assert len(error) < 5_000, len(error)


def test_results_json_has_no_bare_nan(tmp_path: Path) -> None:
    from pytest_vllm_conformance import untrusted

    doc = untrusted.clean(
        {"slope": float("nan"), "values": [1.5, float("inf"), float("-inf")], "n": 3}
    )
    assert doc == {"slope": None, "values": [1.5, None, None], "n": 3}
    json.dumps(doc, allow_nan=False)


def test_a_failing_writer_stops_no_other(pytester: pytest.Pytester, fault: FaultServer) -> None:
    (pytester.path / "taken").mkdir()  # report.html cannot be written over a folder
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "test_health.py", "--vllm-html=taken", "-p", "no:randomly"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "verdict: PASS; results in *results.json, *metrics.txt",
            "vllm-conformance: could not write *taken: IsADirectoryError*",
        ]
    )
    assert (pytester.path / "reports" / "results.json").is_file()
    assert (pytester.path / "reports" / "metrics.txt").is_file()


def test_every_spelling_and_cut_off_piece_of_a_key_is_redacted() -> None:
    from pytest_vllm_conformance import untrusted

    key = 'sk-proj-Ab/cd+ef"gh\\ij-0123456789'
    echoed = [
        key,
        quote(key, safe=""),
        json.dumps(key)[1:-1],
        repr(key)[1:-1],
        key.replace("/", "\\/"),
        key[:20],
        key[-9:],
    ]
    text = untrusted.redact(" | ".join(f"<{e}>" for e in echoed), [key])
    assert text == " | ".join(["<***>"] * len(echoed))
    assert untrusted.redact("sk-proj", [key]) == "sk-proj"  # under 8 characters: not the key
    assert untrusted.redact("a key", []) == "a key"


def test_safe_text_is_escaped_bounded_and_stable() -> None:
    from pytest_vllm_conformance import untrusted

    hostile = "id\x1b[2J\x1b]0;title\x07\u202eevil\r\nnext\rover\ud800" + "x" * 10_000
    once = untrusted.safe(hostile, 100)
    assert once.startswith("id\\x1b[2J\\x1b]0;title\\x07\\u202eevil\nnext\\rover\\ud800xx")
    assert re.search(r"x\.\.\. \(9,9\d\d more characters\)$", once)  # counted as shown
    assert untrusted.safe(once, 100) == once  # made safe twice (worker, then controller)
    assert untrusted.line("a\nb\tc") == "a\\nb\\tc"
    once.encode("utf-8")


def test_a_server_log_is_redacted(tmp_path: Path) -> None:
    from pytest_vllm_conformance import untrusted
    from pytest_vllm_conformance.secrets import Secret

    log = tmp_path / "vllm-server.log"
    log.write_bytes(b"args: api_key=" + KEY.encode() + b"\n\xff raw byte kept\n")
    secret = Secret(KEY)
    untrusted.register(secret)
    try:
        untrusted.redact_file(log)
    finally:
        untrusted.unregister(secret)
    assert log.read_bytes() == b"args: api_key=***\n\xff raw byte kept\n"


# issue 14 review: the controller cleans every report again (workers may not know a secret)
def test_the_controller_cleans_a_worker_report_before_any_writer() -> None:
    from pytest_vllm_conformance import untrusted
    from pytest_vllm_conformance.secrets import Secret
    from pytest_vllm_conformance.session import ConformanceSession

    session = object.__new__(ConformanceSession)  # the hooks use no state of the session
    report = pytest.TestReport(
        "t.py::t",
        ("t.py", 1, "t"),
        {},
        "failed",
        f"token {KEY} said \x1b[31mred",
        "call",
        sections=[("Captured stdout", f"echo {KEY}\x07")],
        user_properties=[("said", f"Bearer {KEY}")],
    )
    collected = pytest.CollectReport("t.py", "failed", f"cannot collect: {KEY}", [])
    secret = Secret(KEY)  # known to the controller only: the worker sent it unredacted
    untrusted.register(secret)
    try:
        session.pytest_runtest_logreport(report)
        session.pytest_runtest_logreport(report)  # idempotent
        session.pytest_collectreport(collected)
    finally:
        untrusted.unregister(secret)
    assert str(report.longrepr) == "token *** said \\x1b[31mred"
    assert report.sections == [("Captured stdout", "echo ***\\x07")]
    assert report.user_properties == [("said", "Bearer ***")]
    assert str(collected.longrepr) == "cannot collect: ***"
    for hook in (
        ConformanceSession.pytest_runtest_logreport,
        ConformanceSession.pytest_collectreport,
    ):  # before terminal and junitxml
        assert getattr(hook, "pytest_impl", {}).get("tryfirst"), hook
