"""The harness's HTTP client: one request per connection, timed, with replayable records."""

from pytest_vllm_conformance.client.errors import (
    BodyTooLarge,
    ClientError,
    ConnectError,
    HeadersTooLarge,
    MalformedResponse,
    MalformedStream,
    RequestTimeout,
)
from pytest_vllm_conformance.client.events import EventKind, StreamEvent, timeline
from pytest_vllm_conformance.client.http import AsyncClient
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.client.sync import Client

__all__ = [
    "AsyncClient",
    "BodyTooLarge",
    "Client",
    "ClientError",
    "ConnectError",
    "EventKind",
    "HeadersTooLarge",
    "MalformedResponse",
    "MalformedStream",
    "RequestRecord",
    "RequestTimeout",
    "Response",
    "StreamEvent",
    "Timings",
    "timeline",
]
