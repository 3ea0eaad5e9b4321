"""The official OpenAI SDK, carried by the harness's bounded client.

The SDK's own transport (httpx) limits each read, not the request: a server that
trickles one byte a second kept a ``timeout=60`` call alive for ever, and it reads
any body it is sent (a body announced as 5 GB took a run to 2.5 GB of memory).
Here the SDK builds and parses every request and answer as usual, but the bytes
travel through :class:`~pytest_vllm_conformance.client.http.AsyncClient`, with its
whole-request deadline (``--vllm-timeout``), 64 MiB body cap, header caps and
typed errors. The answer is handed to the SDK whole, so a streamed answer is read
by the SDK's own SSE decoder from the same bytes a user's SDK would get.

Recent SDKs speak ``httpx2``, older ones ``httpx``; the transport is built on
whichever the installed SDK uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pytest_vllm_conformance.client.errors import ClientError
from pytest_vllm_conformance.client.sync import Client

#: Request headers the harness's client writes itself, or that only describe the SDK.
_NOT_FORWARDED = {
    "host",
    "content-length",
    "content-type",
    "accept",
    "accept-encoding",
    "connection",
    "authorization",
    "transfer-encoding",
    "user-agent",
    "cookie",
}
#: Response headers that would make httpx transform a body it already has whole.
_NOT_RETURNED = {"content-encoding", "transfer-encoding", "content-length"}


def _httpx_module() -> Any:
    """The httpx flavour the installed SDK's ``http_client`` must be built from."""
    base = importlib.import_module("openai._base_client")
    return getattr(base, "httpx2", None) or importlib.import_module("httpx")


def bounded_http_client(client: Client) -> tuple[Any, Callable[[], str]]:
    """An ``http_client`` for ``openai.OpenAI``, and a function giving the last ``curl`` line."""
    httpx = _httpx_module()
    last_curl = [""]

    class BoundedTransport(httpx.BaseTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            url = urlsplit(str(request.url))
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in _NOT_FORWARDED and not k.lower().startswith("x-stainless")
            }
            body = request.read()
            try:
                r = client.run(
                    client.aio.request(
                        request.method,
                        path,
                        raw=body or None,
                        base_url=f"{url.scheme}://{url.netloc}",
                        headers=headers,
                    )
                )
            except ClientError as exc:
                last_curl[0] = exc.curl
                raise
            last_curl[0] = r.curl
            kept = [(k, v) for k, v in r.headers.items() if k not in _NOT_RETURNED]
            return httpx.Response(r.status, headers=kept, content=r.body, request=request)

    return httpx.Client(transport=BoundedTransport(), timeout=None), lambda: last_curl[0]


@contextmanager
def official_sdk(
    client: Client, base_url: str, api_key: str
) -> Iterator[tuple[Any, Callable[[], str]]]:
    """``openai.OpenAI`` on the bounded transport, strict, without retries; closed after."""
    import openai

    http_client, last_curl = bounded_http_client(client)
    sdk = openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        http_client=http_client,
        _strict_response_validation=True,
    )
    try:
        yield sdk, last_curl
    finally:
        sdk.close()
        http_client.close()
