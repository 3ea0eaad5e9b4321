"""Micro-benchmarks of the timing path: SSE splitting, event typing, per-request figures.

    pytest benchmarks/test_hot_paths.py --benchmark-only

Only ``SSEDecoder.feed`` runs while a stream is being read; the rest runs after it ends.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.client.sse import SSEDecoder
from pytest_vllm_conformance.perf import latency
from pytest_vllm_conformance.perf.stats import Summary

CHUNKS = 64


def _body() -> bytes:
    events = [
        b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
        b'"choices":[{"index":0,"text":" t%d","logprobs":null,"finish_reason":null}]}\n\n' % k
        for k in range(CHUNKS)
    ]
    events.append(
        b'data: {"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":8,'
        b'"completion_tokens":64,"total_tokens":72}}\n\ndata: [DONE]\n\n'
    )
    return b"".join(events)


BODY = _body()


def _feed(pieces: list[bytes]) -> SSEDecoder:
    decoder = SSEDecoder()
    for i, piece in enumerate(pieces):
        decoder.feed(piece, float(i))
    decoder.close()
    return decoder


def test_sse_feed_one_event_per_read(benchmark: Any) -> None:
    pieces = [e + b"\n\n" for e in BODY.split(b"\n\n") if e]
    decoder = benchmark(_feed, pieces)
    assert len(decoder.events) == CHUNKS + 2 and decoder.done_seen


def test_sse_feed_whole_body_in_one_read(benchmark: Any) -> None:
    decoder = benchmark(_feed, [BODY])
    assert len(decoder.events) == CHUNKS + 2


def test_sse_feed_split_mid_event(benchmark: Any) -> None:
    pieces = [BODY[i : i + 97] for i in range(0, len(BODY), 97)]
    assert len(benchmark(_feed, pieces).events) == CHUNKS + 2


def _response() -> Response:
    decoder = _feed([e + b"\n\n" for e in BODY.split(b"\n\n") if e])
    record = RequestRecord("POST", "http://h/v1/completions", b"{}", True, False, ())
    return Response(
        record,
        200,
        {"content-type": "text/event-stream"},
        BODY,
        Timings(1.0, 1.0, 1.0, 2.0, 2.0, 70.0),
        decoder.events,
        [],
        True,
    )


def test_stream_sample_after_the_stream(benchmark: Any) -> None:
    sample = benchmark(latency.stream_sample, _response(), 0.5)
    assert sample.ok and sample.server_tokens == CHUNKS and len(sample.itl_ms) == CHUNKS - 1


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_percentile_summary(benchmark: Any, n: int) -> None:
    rng = random.Random(0)
    values = [rng.expovariate(1.0) for _ in range(n)]
    assert benchmark(Summary.of, values).count == n


def test_json_of_one_chunk_for_scale(benchmark: Any) -> None:
    """Reference point: what json.loads of one chunk costs (done once per event, post-stream)."""
    chunk = BODY.split(b"\n\n")[0][6:]
    assert benchmark(json.loads, chunk)["id"] == "cmpl-1"
