"""The client: SSE decoding, timing, and every way an answer can be broken."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_conformance.client import (
    AsyncClient,
    BodyTooLarge,
    Client,
    ConnectError,
    EventKind,
    MalformedResponse,
    MalformedStream,
    RequestTimeout,
    timeline,
)
from pytest_vllm_conformance.client.events import stream_text
from pytest_vllm_conformance.client.sse import SSEDecoder
from pytest_vllm_conformance.secrets import Secret
from tests.conftest import Writer
from tests.fault_server import MODEL, FaultServer

KEY = "sk-DISTINCTIVE-client-key-42"
CHAT = {
    "model": MODEL,
    "max_tokens": 4,
    "stream": True,
    "temperature": 0,
    "messages": [{"role": "user", "content": "hi"}],
}


# -- SSE decoding --------------------------------------------------------------------------
def test_events_split_across_reads_keep_the_time_of_the_completing_read() -> None:
    d = SSEDecoder()
    d.feed(b'data: {"a"', 1.0)
    d.feed(b": 1}\n", 2.0)
    d.feed(b"\ndata: [DONE]\n\n", 3.0)
    assert [(e.t, e.data) for e in d.events] == [(3.0, b'{"a": 1}'), (3.0, b"[DONE]")]
    assert d.done_seen and not d.problems


def test_crlf_comments_and_multi_line_data_are_understood() -> None:
    d = SSEDecoder()
    d.feed(b": keep-alive\r\n\r\nevent: delta\r\ndata: one\r\ndata: two\r\nid: 7\r\n\r\n", 1.0)
    assert [(e.event, e.data) for e in d.events] == [(b"delta", b"one\ntwo")]
    assert not d.problems


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"garbage\n\n", "not an SSE field line: b'garbage'"),
        (b"data: [DONE]\n\ndata: late\n\n", "data after [DONE]: b'late'"),
    ],
)
def test_framing_faults_are_recorded(raw: bytes, problem: str) -> None:
    d = SSEDecoder()
    d.feed(raw, 0.0)
    assert d.problems == [problem]


def test_an_unterminated_last_event_is_a_problem() -> None:
    d = SSEDecoder()
    d.feed(b'data: {}\n\ndata: {"cut', 0.0)
    d.close()
    assert len(d.events) == 1
    assert d.problems[0].startswith("the stream ended inside an event")


@given(
    st.lists(
        st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=17),
)
def test_any_read_boundaries_give_the_same_events(payloads: list[bytes], step: int) -> None:
    raw = b"".join(b"data: " + p + b"\n\n" for p in payloads)
    d = SSEDecoder()
    for i in range(0, len(raw), step):
        d.feed(raw[i : i + step], float(i))
    assert [e.data for e in d.events] == payloads


# -- the client against the fault server --------------------------------------------------
@pytest.fixture
def client(fault: FaultServer) -> Iterator[Client]:
    with Client(AsyncClient(fault.url, timeout=2.0)) as c:
        yield c


def test_a_stream_becomes_timed_typed_events(client: Client) -> None:
    r = client.stream("/v1/chat/completions", CHAT | {"stream_options": {"include_usage": True}})
    kinds = [e.kind for e in timeline(r)]
    assert kinds == [EventKind.STARTED, *[EventKind.TOKEN] * 4, EventKind.END, EventKind.USAGE]
    plain = client.post("/v1/chat/completions", CHAT | {"stream": False}).json()
    assert stream_text(r) == plain["choices"][0]["message"]["content"]
    t = r.timings
    assert 0 < t.scheduled <= t.connected <= t.sent <= t.first_byte <= t.headers <= t.done
    times = [e.t for e in timeline(r)]
    assert times == sorted(times)


def test_a_non_json_data_line_is_a_typed_failure(client: Client, fault: FaultServer) -> None:
    fault.faults = {"stream_non_json"}
    r = client.stream("/v1/chat/completions", CHAT)
    with pytest.raises(MalformedStream, match=r"SSE event 2 .* is not JSON: b'\{not json'"):
        r.chunks()


def test_a_stalled_stream_times_out_and_says_how_far_it_got(
    client: Client, fault: FaultServer
) -> None:
    fault.faults = {"stream_stalls"}
    with pytest.raises(RequestTimeout) as info:
        client.stream("/v1/chat/completions", CHAT, timeout=0.5)
    assert "no complete answer within 0.5 s; 3 events arrived but the stream never ended" in str(
        info.value
    )
    assert info.value.curl.startswith("curl -sS -N ")


def test_an_oversize_body_is_cut_off(fault: FaultServer) -> None:
    fault.faults = {"huge_body"}
    with (
        Client(AsyncClient(fault.url, max_body=1_000_000)) as c,
        pytest.raises(BodyTooLarge, match="past 1000000 bytes"),
    ):
        c.post("/v1/completions", {"model": MODEL, "prompt": "x"})


def test_a_non_json_body_names_the_request(client: Client) -> None:
    r = client.get("/health")
    with pytest.raises(
        MalformedResponse,
        match=r"GET http://.*/health answered HTTP 200 with a "
        r"body that is not JSON",
    ):
        r.json()


def test_the_key_is_sent_but_never_in_curl_or_messages(fault: FaultServer) -> None:
    fault.api_key = "wrong"
    fault.faults = {"echo_key"}
    with Client(AsyncClient(fault.url, Secret(KEY))) as c:
        r = c.post("/v1/completions", {"model": MODEL, "prompt": "x"})
    assert r.status == 401
    assert KEY in r.body.decode()  # the server echoed it...
    assert KEY not in r.curl and "$VLLM_API_KEY" in r.curl
    assert KEY not in c.aio._redact(r.error_message())  # ...but we never repeat it


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        Client(AsyncClient(f"http://127.0.0.1:{port}")) as c,
        pytest.raises(ConnectError, match="connection refused"),
    ):
        c.get("/health")


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", MalformedResponse, "the server sent invalid HTTP"),
        (b"", MalformedResponse, "closed the connection before answering"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
            MalformedResponse,
            "closed the connection while sending the body",
        ),
    ],
)
def test_broken_http_is_a_clear_failure(
    raw_server: tuple[str, list[Writer]], reply: bytes, error: type[Exception], text: str
) -> None:
    url, writers = raw_server
    writers.append(lambda conn: conn.sendall(reply))
    with Client(AsyncClient(url, timeout=2)) as c, pytest.raises(error, match=text):
        c.get("/v1/models")


def test_a_body_ended_by_closing_the_connection_is_complete(
    raw_server: tuple[str, list[Writer]],
) -> None:
    url, writers = raw_server
    writers.append(
        lambda conn: conn.sendall(
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": true}'
        )
    )
    with Client(AsyncClient(url, timeout=2)) as c:
        assert c.get("/x").json() == {"ok": True}


def test_the_loop_thread_serves_concurrent_requests(client: Client) -> None:
    async def many() -> list[int]:
        rs = await asyncio.gather(*(client.aio.get("/health") for _ in range(50)))
        return [r.status for r in rs]

    assert client.run(many()) == [200] * 50


def test_secrets_do_not_print_or_pickle() -> None:
    import pickle

    s = Secret(KEY)
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s}"
    with pytest.raises(TypeError):
        pickle.dumps(s)
