"""Bounded requests and SSE as the standard defines it (issue 14).

A server that trickles, announces a huge body, floods headers, switches protocols or
stalls a stream costs at most one --vllm-timeout per request and a bounded amount of
memory, and ends as a titled failure; legal but unusual SSE (CR-only line endings,
comments, ``event``/``id``/``retry``/unknown fields) passes.
"""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_conformance.checks import streaming
from pytest_vllm_conformance.client import (
    AsyncClient,
    BodyTooLarge,
    Client,
    HeadersTooLarge,
    MalformedResponse,
    RequestTimeout,
)
from pytest_vllm_conformance.client.sse import MAX_PROBLEMS, SSEDecoder
from pytest_vllm_conformance.failures import CheckFailure
from tests.conftest import Writer
from tests.fault_server import MODEL, FaultServer

CHAT = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
SDK_CHAT = "test_compliance.py::test_the_openai_sdk_accepts_the_answers[chat]"
BOUND_S = 20.0  # generous: each case takes ~3 s (the timeout) or less on a busy 2-core box


def _run(
    pytester: pytest.Pytester, fault: FaultServer, *args: str
) -> tuple[pytest.RunResult, float]:
    started = time.monotonic()
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "--vllm-timeout=3", "-p", "no:randomly", *args
    )
    return result, time.monotonic() - started


def _clean(result: pytest.RunResult) -> None:
    out = result.stdout.str() + result.stderr.str()
    for raw in ("Traceback", "Fatal error", "INTERNALERROR"):
        assert raw not in out, out


# -- deadlines: the plugin's client and the official SDK ----------------------------------
def test_a_trickling_answer_cannot_outlast_the_timeout(fault: FaultServer) -> None:
    fault.faults = {"trickle"}
    started = time.monotonic()
    with (
        Client(AsyncClient(fault.url, timeout=3)) as c,
        pytest.raises(RequestTimeout, match="no complete answer within 3 s"),
    ):
        c.post("/v1/chat/completions", CHAT)
    assert time.monotonic() - started < BOUND_S


def test_the_sdk_test_ends_at_the_timeout_on_a_trickling_server(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"trickle"}
    result, took = _run(pytester, fault, SDK_CHAT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*Request timed out*", "*no complete answer within 3 s*", "*reproduce: curl -sS*"]
    )
    assert took < BOUND_S
    _clean(result)


# -- memory: bodies and headers ------------------------------------------------------------
def test_the_sdk_test_refuses_a_huge_body_in_bounded_memory(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"huge_announced_body"}
    # The child reports its own peak, VmHWM of its own memory map. Not getrusage: a child's
    # ru_maxrss keeps the high-water mark of the process it was forked from (this test session,
    # ~1 GB late in a full run), and RUSAGE_CHILDREN is the largest process ever reaped.
    pytester.makeconftest("""
        import re
        from pathlib import Path

        def pytest_unconfigure(config):
            status = Path("/proc/self/status").read_text()
            print("PEAK_RSS_KIB=" + re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
    """)
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}", "--vllm-timeout=10", "-p", "no:randomly", SDK_CHAT
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Response body too large*",
            "*would grow past 67108864 bytes (Content-Length: 5000000000)*",
        ]
    )
    peaks = [
        int(line.split("=", 1)[1])
        for line in result.stdout.lines
        if line.startswith("PEAK_RSS_KIB=")
    ]
    assert len(peaks) == 1, result.stdout.str()
    peak_mib = peaks[0] / 1024
    assert peak_mib < 512, f"the child pytest peaked at {peak_mib:.0f} MiB"
    _clean(result)


def test_an_unannounced_body_is_cut_off_as_it_grows(raw_server: tuple[str, list[Writer]]) -> None:
    url, writers = raw_server

    def endless_chunks(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        for _ in range(1000):  # 1 GiB if nobody stops reading
            conn.sendall(chunk)

    writers.append(endless_chunks)
    with (
        Client(AsyncClient(url, timeout=10, max_body=4 * 1024 * 1024)) as c,
        pytest.raises(BodyTooLarge, match="grew past 4194304 bytes"),
    ):
        c.get("/v1/models")


def test_fifty_thousand_headers_are_refused_quickly(fault: FaultServer) -> None:
    fault.faults = {"many_headers"}
    started = time.monotonic()
    with (
        Client(AsyncClient(fault.url, timeout=10)) as c,
        pytest.raises(HeadersTooLarge, match="more than 256 headers"),
    ):
        c.post("/v1/chat/completions", CHAT)
    assert time.monotonic() - started < BOUND_S


def test_one_endless_header_is_refused(raw_server: tuple[str, list[Writer]]) -> None:
    url, writers = raw_server
    writers.append(
        lambda conn: conn.sendall(
            b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 4 * 1024 * 1024 + b"\r\n\r\n"
        )
    )
    with (
        Client(AsyncClient(url, timeout=10)) as c,
        pytest.raises(HeadersTooLarge, match="status line and headers grew past 65536 bytes"),
    ):
        c.get("/v1/models")


def test_the_sdk_test_names_a_header_flood(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"many_headers"}
    result, took = _run(pytester, fault, SDK_CHAT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Response headers too large*"])
    assert took < BOUND_S
    _clean(result)


# -- 101 Switching Protocols ---------------------------------------------------------------
def test_a_101_answer_is_a_typed_error_without_an_asyncio_traceback(
    fault: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    fault.faults = {"http_101"}
    with (
        Client(AsyncClient(fault.url, timeout=3)) as c,
        pytest.raises(MalformedResponse, match="answered HTTP 101 and switched protocols"),
    ):
        c.post("/v1/chat/completions", CHAT)
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


def test_the_suites_report_a_101_answer_as_a_titled_failure(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"http_101"}
    result, _ = _run(
        pytester,
        fault,
        SDK_CHAT,
        "test_compliance.py::test_chat_completions_match_the_schema[user-turn]",
    )
    result.assert_outcomes(failed=2)
    assert result.stdout.str().count("Malformed HTTP response") >= 2
    _clean(result)


# -- a stalled shared stream ---------------------------------------------------------------
def test_a_stalled_stream_costs_one_timeout_per_kind(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"stream_stalls"}
    before = fault.requests
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", "--vllm-timeout=1", "-p", "no:randomly", "test_streaming.py"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0 and outcomes["failed"] >= 30, outcomes
    # the canary (one completion) and one stream per kind; not one per test
    assert fault.requests - before <= 1 + 5, fault.requests - before
    assert result.stdout.str().count("Request timed out") >= 30
    _clean(result)


# -- SSE as the standard defines it --------------------------------------------------------
@pytest.mark.parametrize("fault_name", ["sse_cr_only", "sse_other_fields"])
def test_legal_unusual_sse_passes_every_streaming_check(
    pytester: pytest.Pytester, fault: FaultServer, fault_name: str
) -> None:
    fault.faults = {fault_name}
    result, _ = _run(
        pytester, fault, "test_streaming.py", "test_compliance.py", "test_health.py", "-rf"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 60


def test_the_sdk_failing_on_a_stream_is_titled_not_a_raw_json_error(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"stream_non_json"}
    result, _ = _run(
        pytester, fault, "test_compliance.py::test_the_openai_sdk_accepts_the_answers[chat-stream]"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*The OpenAI SDK rejects the answer*",
            "*received: JSONDecodeError*",
            "*reproduce: curl -sS*",
        ]
    )
    _clean(result)


def _events(raw: bytes, step: int) -> SSEDecoder:
    d = SSEDecoder()
    for i in range(0, len(raw), step):
        d.feed(raw[i : i + step], float(i))
    d.close()
    return d


# Two line ends, in every legal spelling (a CR then an LF is one CRLF, so not "\r" + "\n").
BLANK_LINES = [b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r", b"\r\n\n", b"\n\r\n", b"\r\n\r", b"\r\r\n"]


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
            st.sampled_from(BLANK_LINES),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=1, max_value=13),
)
def test_cr_lf_and_crlf_endings_split_anywhere_give_the_same_events(
    events: list[tuple[bytes, bytes]], step: int
) -> None:
    raw = b"".join(b"data: " + payload + end for payload, end in events)
    d = _events(raw, step)
    assert [e.data for e in d.events] == [payload for payload, _ in events]
    assert not d.problems


def test_a_cr_then_an_lf_in_the_next_read_is_one_line_end() -> None:
    d = SSEDecoder()
    d.feed(b"data: a\r", 1.0)
    d.feed(b"\n\r", 2.0)
    d.feed(b"\ndata: b\r\r", 3.0)
    assert [(e.t, e.data) for e in d.events] == [(2.0, b"a"), (3.0, b"b")]


def test_comments_bom_and_fields_other_than_data_are_legal() -> None:
    raw = (
        b"\xef\xbb\xbf: hello\n\nretry: 10\nid: 1\nevent: message\nx-trace: 7\ndata\n\n"
        b"id\nevent\nretry\ndata: {}\n\n: last words\n"
    )
    d = _events(raw, 5)
    assert [(e.event, e.data) for e in d.events] == [(b"message", b""), (b"", b"{}")]
    assert not d.problems


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"garbage\n\n", "not an SSE field line: b'garbage'"),
        (b'{"id": 1}\n\n', "not an SSE field line: b'{\"id\": 1}'"),
        (b"data: [DONE]\r\rdata: late\r\r", "data after [DONE]: b'late'"),
    ],
)
def test_content_no_reader_delivers_is_still_flagged(raw: bytes, problem: str) -> None:
    assert _events(raw, 3).problems == [problem]


def test_framing_problems_are_kept_in_bounded_number() -> None:
    d = _events(b"garbage\n\n" * 100_000, 65536)
    assert len(d.problems) == MAX_PROBLEMS


@pytest.mark.parametrize(
    "chunk",
    [{"choices": "abc"}, {"choices": [7]}, {"choices": [{"index": [0], "finish_reason": "stop"}]}],
)
def test_wrong_typed_choices_are_a_titled_failure(chunk: dict[str, object]) -> None:
    for check in (streaming.finish_reason_only_on_last, streaming.first_chat_chunk_has_role):
        with pytest.raises(CheckFailure, match="Response body has the wrong shape"):
            check([chunk])


def test_ids_of_any_json_type_are_compared_without_a_type_error() -> None:
    with pytest.raises(CheckFailure, match="Stream chunks carry different ids"):
        streaming.one_id([{"id": [1]}, {"id": {"a": 1}}])
