"""Every server value is validated before use (issue 14).

A malformed answer gives a titled check failure or the one-line start-up error, never
INTERNALERROR, a raw exception or a traceback; a non-finite number is a finding, never a
pass; the results file stays valid JSON. Each case runs against the fault server switched
to exactly one defect; the unit tests pin the accessors the checks read answers through.
"""

from __future__ import annotations

import json
import math
import re
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.checks import embeddings, metrics, semantics, values
from pytest_vllm_conformance.client import MalformedResponse, MalformedStream, timeline
from pytest_vllm_conformance.client.events import text_times
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.client.sse import SSEEvent
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf import latency
from pytest_vllm_conformance.target.discovery import NotReady, _model_ids
from pytest_vllm_conformance.workload import determinism
from tests.fault_server import MODEL, FaultServer
from tests.test_checks_bite import QUICK

RAW_ERRORS = ("AttributeError", "IndexError", "KeyError", "TypeError")
#: The suites' last line of defence (suites/conftest.py): no bundled test may reach it on a
#: malformed answer; every failure carries the title of the check that read the value.
FALLBACK = "Harness could not read the answer"


def _strict_json(path: Path) -> Any:
    """The file as JSON as the standard defines it: NaN or Infinity are errors."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# -- start-up ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault_name", "said"),
    [
        ("models_data_not_list", "data = an integer: 7, not a list of models"),
        ("deep_json", "JSON body nested too deeply to read"),
    ],
)
def test_a_malformed_model_list_is_one_start_up_line(
    pytester: pytest.Pytester, fault: FaultServer, fault_name: str, said: str
) -> None:
    fault.faults = {fault_name}
    result = pytester.runpytest(f"--vllm-url={fault.url}", "-m", "health")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and said in errors[0], output
    assert "INTERNALERROR" not in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([{"id": MODEL}], "not a JSON object"),
        ({"data": "fault-model"}, "data = a string: 'fault-model', not a list"),
        ({"data": None}, "data = null: None, not a list"),
        (
            {"data": [{"id": 5}, {"id": None}]},
            "no model that has a string id (the first: an integer: 5)",
        ),
        ({"data": [7]}, "no model that has a string id (the first: an integer: 7)"),
        ({"data": []}, "lists no model"),
    ],
)
def test_model_list_shapes_are_named(body: Any, said: str) -> None:
    with pytest.raises(NotReady) as caught:
        _model_ids(body, "http://h")
    assert said in str(caught.value)


def test_ids_that_are_strings_are_kept() -> None:
    assert _model_ids({"data": [{"id": 3}, {"id": "m"}]}, "http://h") == ["m"]


# -- whole suite against wrong-typed JSON -----------------------------------------------------
def _failures(doc: dict[str, Any]) -> dict[str, str]:
    return {
        t["nodeid"]: t["failure"]["title"]
        for t in doc["tests"]
        if t["outcome"] in ("failed", "error")
    }


@pytest.mark.parametrize("fault_name", ["choices_string", "usage_list"])
def test_wrong_typed_json_gives_titled_failures_in_every_suite(
    pytester: pytest.Pytester, fault: FaultServer, fault_name: str
) -> None:
    fault.faults = {fault_name}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        f"--vllm-embedding-model={MODEL}",
        "-p",
        "no:randomly",
        "--vllm-determinism-requests=5",
        *QUICK,
    )
    output = result.stdout.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    failures = _failures(_strict_json(pytester.path / "reports" / "results.json"))
    assert failures, "the defect went unnoticed"
    assert "Test failed" not in failures.values() and "Test error" not in failures.values()
    assert (
        failures.get("test_compliance.py::test_max_tokens_is_respected[chat]")
        == "Response body has the wrong shape"
    )
    fallen = [node for node, title in failures.items() if title == FALLBACK]
    assert not fallen, fallen
    if fault_name == "choices_string":  # the determinism and streaming suites read it too
        for node in (
            "test_determinism.py::test_seeded_sampling_reproduces",
            "test_streaming.py::test_first_chat_chunk_carries_the_role[chat]",
            "test_streaming.py::test_finish_reason_only_on_the_last_chunk[chat]",
        ):
            assert failures.get(node) == values.WRONG_SHAPE, (node, failures)
    # raw exceptions appear only as the received text of those titled fallbacks
    raw = [
        line
        for line in output.splitlines()
        if any(e in line for e in RAW_ERRORS) and "while reading it" not in line
    ]
    assert not raw, raw


# -- non-finite numbers ---------------------------------------------------------------------
def test_nan_in_metrics_leaves_latency_judged_and_the_results_valid_json(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"metrics_nan"}
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        "-p",
        "no:randomly",
        *QUICK,
        "test_latency.py::test_streamed_completions_at_each_concurrency_level[c1]",
        "test_memory.py",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Non-finite number from the server*"])
    doc = _strict_json(pytester.path / "reports" / "results.json")
    notes = [
        v for t in doc["tests"] for k, v in t["properties"].items() if k.endswith("server view")
    ]
    assert notes and "Non-finite number from the server" in notes[0], doc["tests"]


def test_memory_turning_nan_mid_run_stops_the_load_with_a_finding(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """The first readings are sound; a later NaN ends the window early with its finding."""
    stop = threading.Event()
    first = fault._scrapes

    def turn_nan() -> None:  # start-up's probe, the suite's probe, then two sound samples
        while not stop.wait(0.05):
            if fault._scrapes >= first + 4:
                fault.faults.add("metrics_nan")
                return

    switch = threading.Thread(target=turn_nan, daemon=True)
    switch.start()
    try:
        result = pytester.runpytest(
            f"--vllm-url={fault.url}",
            "-p",
            "no:randomly",
            *QUICK,
            "--vllm-memory-duration=60s",
            "test_memory.py",
        )
    finally:
        stop.set()
    assert "metrics_nan" in fault.faults, "the readings never turned NaN"
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Non-finite number from the server*"])
    took = float(re.findall(r"in ([\d.]+)s", result.stdout.lines[-1])[0])
    assert took < 40, "the 60 s load window ran on after its readings broke"


# -- the accessors and parsers, one shape each -------------------------------------------------
def _response(body: bytes, events: tuple[bytes, ...] = ()) -> Response:
    return Response(
        RequestRecord("POST", "http://h/v1/completions", b"{}"),
        200,
        {},
        body,
        Timings(sent=1.0, done=2.0),
        events=[SSEEvent(data=e, t=1.5) for e in events],
        done_seen=True,
    )


def test_a_deeply_nested_body_is_a_typed_error_anywhere() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MalformedResponse, match="nested too deeply"):
        _response(deep).json()
    with pytest.raises(MalformedStream):
        _response(b"", (deep,)).chunks()
    assert text_times([SSEEvent(data=deep, t=1.0)])[2] == "a streamed data: line is not JSON"
    assert _response(deep).error_message().startswith("[[[")


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": 7},
        {"choices": [{"index": 0, "text": 5}]},
        {"choices": [{"index": "0", "text": "a"}]},
        {"choices": [{"index": 0, "text": "a", "token_ids": [1, "2"]}]},
        {"choices": [{"index": 0, "delta": {"content": ["a"]}}]},
    ],
)
def test_a_wrong_typed_stream_chunk_is_a_malformed_stream(chunk: dict[str, Any]) -> None:
    with pytest.raises(MalformedStream, match="wrong shape"):
        timeline(_response(b"", (json.dumps(chunk).encode(),)))


@pytest.mark.parametrize(
    ("chunk", "problem"),
    [
        ({"choices": 7}, "not a list"),
        ({"choices": [{"text": "a"}], "usage": {"completion_tokens": -3}}, "not a count"),
        ({"choices": [{"text": "a"}], "usage": {"completion_tokens": True}}, "not a count"),
    ],
)
def test_the_measuring_path_names_wrong_types(chunk: dict[str, Any], problem: str) -> None:
    assert problem in text_times([SSEEvent(data=json.dumps(chunk).encode(), t=1.0)])[2]


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"choices": "abc", "usage": {}}, lambda b: semantics.finish_reasons_set(b)),
        ({"choices": ["abc"]}, lambda b: semantics.n_choices_indexed(b, semantics.Count(n=1))),
        (
            {"choices": [{"index": 0}], "usage": [1, 2, 3]},
            lambda b: semantics.max_tokens_respected(b, semantics.Count(n=5)),
        ),
        (
            {
                "choices": [{"index": 0}],
                "usage": {"prompt_tokens": "1", "completion_tokens": 1, "total_tokens": 2},
            },
            lambda b: semantics.usage_adds_up(b),
        ),
        ({"choices": [{"message": "hi"}]}, lambda b: values.choice_text(b)),
        ({"choices": []}, lambda b: values.choice_text(b)),
        ({"choices": [{"text": None}]}, lambda b: values.choice_text(b)),
        (7, lambda b: values.usage(b)),
    ],
)
def test_wrong_shapes_are_titled(body: Any, check: Any) -> None:
    with pytest.raises(CheckFailure) as caught:
        check(body)
    assert caught.value.title == values.WRONG_SHAPE and caught.value.path.startswith("$")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_logprobs_are_findings(value: float) -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "logprobs": {
                    "tokens": ["a"],
                    "token_logprobs": [value],
                    "top_logprobs": [{"a": -1, "b": -2, "c": -3}],
                },
            }
        ]
    }
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        semantics.completion_logprobs_count(body, semantics.Count(n=3))
    chat = {
        "choices": [
            {
                "index": 0,
                "logprobs": {"content": [{"token": "a", "logprob": value, "top_logprobs": []}]},
            }
        ]
    }
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        semantics.chat_logprobs_count(chat, semantics.Count(n=0))


def test_a_positive_logprob_is_a_finding() -> None:
    with pytest.raises(CheckFailure, match="Log-probability above 0"):
        semantics.logprob(0.5, "$.x")
    assert semantics.logprob(None, "$.x") is None and semantics.logprob(-0.0, "$.x") == 0.0


@pytest.mark.parametrize(
    "vector", [[0.1, math.nan], [math.inf, 0.0], struct.pack("<2f", 0.1, math.nan)]
)
def test_non_finite_embeddings_are_findings(vector: Any) -> None:
    import base64

    value = base64.b64encode(vector).decode() if isinstance(vector, bytes) else vector
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        embeddings.decode(value)


def test_embedding_checks_cannot_pass_on_overflow_or_bad_base64() -> None:
    with pytest.raises(CheckFailure, match="differs"):
        embeddings.same_vector([1e300, 1e300], embeddings.Same(other=[1e300, 1e300], what="Huge"))
    with pytest.raises(CheckFailure, match="not base64"):
        embeddings.decode("not*base64!")
    with pytest.raises(CheckFailure, match="Wrong number of embeddings"):
        embeddings.vectors({"data": 7}, semantics.Count(n=1))


HIST = """# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.1"} %s
vllm:e2e_request_latency_seconds_bucket{le="+Inf"} 5
vllm:e2e_request_latency_seconds_count 5
vllm:e2e_request_latency_seconds_sum 1
"""


def test_prometheus_values_are_validated_where_they_are_used() -> None:
    scrape = metrics.prometheus_text(HIST % "NaN")
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        scrape.buckets("vllm:e2e_request_latency_seconds")
    assert scrape.value("vllm:e2e_request_latency_seconds_count") == 5
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        latency.server_view(HIST % "1", HIST % "NaN")
    with pytest.raises(CheckFailure, match="not valid Prometheus text"):
        latency.server_view(HIST % "1", "x{ 1\n")
    with pytest.raises(CheckFailure, match="Negative value"):
        metrics.prometheus_text("process_resident_memory_bytes -5\n").total(
            "process_resident_memory_bytes"
        )
    nan_counter = metrics.prometheus_text("# TYPE c counter\nc_total NaN\n")
    with pytest.raises(CheckFailure, match=values.NON_FINITE):
        metrics.counters_only_grow(metrics.Change(nan_counter, nan_counter))


# -- determinism answers (issue 14: h5) --------------------------------------------------------
def _lp(tokens: Any, logprobs: Any) -> dict[str, Any]:
    return {
        "choices": [
            {"index": 0, "text": "ab", "logprobs": {"tokens": tokens, "token_logprobs": logprobs}}
        ]
    }


@pytest.mark.parametrize(
    ("body", "title", "path"),
    [
        (_lp(["a", "b"], [-0.1, math.nan]), values.NON_FINITE, "token_logprobs[1]"),
        (_lp(["a"], [-math.inf]), values.NON_FINITE, "token_logprobs[0]"),
        (_lp(["a"], [10**400]), values.NON_FINITE, "token_logprobs[0]"),
        (_lp(["a"], ["-0.1"]), values.WRONG_SHAPE, "token_logprobs[0]"),
        (_lp(["a", 7], [-0.1, -0.2]), values.WRONG_SHAPE, "tokens[1]"),
        (_lp("ab", [-0.1]), values.WRONG_SHAPE, "logprobs.tokens"),
        (
            {
                "choices": [
                    {
                        "index": 0,
                        "text": "a",
                        "logprobs": {"content": [{"token": "a", "logprob": math.nan}]},
                    }
                ]
            },
            values.NON_FINITE,
            "content[0].logprob",
        ),
        (
            {"choices": [{"index": 0, "text": "a", "logprobs": {"content": [7]}}]},
            values.WRONG_SHAPE,
            "content[0]",
        ),
        (
            {"choices": [{"index": 0, "text": "a", "token_ids": [1, True]}]},
            values.WRONG_SHAPE,
            "token_ids[1]",
        ),
        ({"choices": [{"index": "0", "text": "a"}]}, values.WRONG_SHAPE, "$.choices[0].index"),
        ({"choices": [{"index": 0, "text": ["a"]}]}, values.WRONG_SHAPE, "$.choices[0].text"),
        (
            {"choices": [{"index": 0, "text": "a", "logprobs": "x"}]},
            values.WRONG_SHAPE,
            "$.choices[0].logprobs",
        ),
        ({"choices": "abc"}, values.WRONG_SHAPE, "$.choices"),
        ({"choices": []}, values.WRONG_SHAPE, "$.choices[0]"),
        ([1], values.WRONG_SHAPE, "$"),
    ],
)
def test_determinism_answers_are_read_through_the_accessors(
    body: Any, title: str, path: str
) -> None:
    """A NaN logprob is a finding: compared, it would make every drift look zero."""
    with pytest.raises(CheckFailure) as caught:
        determinism.parse_completion(_response(json.dumps(body).encode()), 0, 0.0)
    assert caught.value.title == title and caught.value.path.endswith(path), caught.value.path


def test_a_sound_determinism_answer_is_read_in_index_order() -> None:
    body = {
        "choices": [
            {"index": 1, "text": "b", "token_ids": [2], "logprobs": None},
            {"index": 0, "text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [None]}},
        ]
    }
    first = determinism.parse_completion(_response(json.dumps(body).encode()), 0, 0.0)
    second = determinism.parse_completion(_response(json.dumps(body).encode()), 1, 0.0, 1)
    assert (first.text, first.tokens, first.logprobs, first.token_ids) == ("a", ("a",), (), None)
    assert (second.text, second.token_ids) == ("b", (2,))
