"""A streaming /v1/completions server with exact, logged timings: the benchmark's ground truth.

    python benchmarks/truth_server.py PORT --ttft-ms 50 --itl-ms 10 --tokens 64

Each request gets ``--tokens`` chunks of one token: the first ``--ttft-ms`` after the request
was read, then one every ``--itl-ms`` (timers on the event loop, no sleeping coroutines),
the last carrying ``finish_reason``, then a usage chunk with empty ``choices`` and
``data: [DONE]``. It logs when each request was read and when each chunk was handed to the
socket (``time.perf_counter``); ``GET /_log`` returns and clears that log. With zero delays
the whole answer is written at once, to measure how many chunks a client can take.
Keep-alive is honoured (aiohttp pools connections; the harness sends Connection: close).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from time import perf_counter
from typing import Any

import httptools

CHUNK = (
    'data: {{"id":"cmpl-{rid}","object":"text_completion","created":1,"model":"truth",'
    '"choices":[{{"index":0,"text":" t{k}","logprobs":null,"finish_reason":{finish}}}]}}'
    "\n\n"
)
USAGE = (
    'data: {{"id":"cmpl-{rid}","object":"text_completion","created":1,"model":"truth",'
    '"choices":[],"usage":{{"prompt_tokens":8,"completion_tokens":{n},'
    '"total_tokens":{total}}}}}\n\ndata: [DONE]\n\n'
)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"


def _framed(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


class Server:
    def __init__(self, ttft_s: float, itl_s: float, tokens: int) -> None:
        self.ttft_s, self.itl_s, self.tokens = ttft_s, itl_s, tokens
        self.log: list[dict[str, Any]] = []
        self.next_id = 0

    def answer(self, proto: Exchange, path: str, body: bytes, keep_alive: bool) -> None:
        loop = asyncio.get_running_loop()
        read = perf_counter()
        if path.startswith("/_log"):
            data = json.dumps(self.log).encode()
            self.log = []
            proto.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(data), data),
                keep_alive,
            )
            return
        if path.startswith("/v1/models") or path.startswith("/health"):
            data = b'{"object":"list","data":[{"id":"truth","object":"model"}]}'
            proto.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(data), data),
                keep_alive,
            )
            return
        try:
            n = int(json.loads(body).get("max_tokens") or self.tokens)
        except ValueError:
            n = self.tokens
        rid = self.next_id = self.next_id + 1
        record: dict[str, Any] = {"id": rid, "read": read, "sent": []}
        head = HEAD + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        pieces = [
            _framed(CHUNK.format(rid=rid, k=k, finish='"length"' if k == n - 1 else "null"))
            for k in range(n)
        ]
        tail = _framed(USAGE.format(rid=rid, n=n, total=n + 8)) + b"0\r\n\r\n"
        if self.ttft_s == 0 and self.itl_s == 0:
            proto.write(head + b"".join(pieces) + tail, keep_alive)
            now = perf_counter()
            record["sent"] = [now] * n
            self.log.append(record)
            return
        proto.transport.write(head)

        def send(k: int) -> None:
            if proto.transport.is_closing():
                return
            proto.transport.write(pieces[k])
            record["sent"].append(perf_counter())
            if k + 1 < n:
                loop.call_at(loop.time() + self.itl_s, send, k + 1)
            else:
                proto.write(tail, keep_alive)
                self.log.append(record)

        loop.call_at(loop.time() + self.ttft_s, send, 0)


class Exchange(asyncio.Protocol):
    """One connection: parse requests with llhttp, hand each to the server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.body = bytearray()
        self.url = b""
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        url, body = self.url.decode(), bytes(self.body)
        self.url, self.body = b"", bytearray()
        self.server.answer(self, url, body, self.parser.should_keep_alive())

    def write(self, data: bytes, keep_alive: bool) -> None:
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()


async def serve(port: int, server: Server) -> None:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Exchange(server), "127.0.0.1", port, backlog=4096)
    print(f"truth server on http://127.0.0.1:{port}", flush=True)
    async with srv:
        await srv.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument(
        "--fifo",
        type=int,
        default=0,
        help="run at this SCHED_FIFO priority (the starved scenario: the truth "
        "must keep its own timing whatever the client suffers)",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.fifo:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.fifo))
    asyncio.run(serve(args.port, Server(args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens)))


if __name__ == "__main__":
    main()
