"""A blocking facade that runs the async client on a private event-loop thread.

Tests are plain functions; a loop thread (rather than ``asyncio.run`` per call) lets
them also run inside an already running loop and keeps one loop for concurrent work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from pytest_vllm_conformance.client.http import AsyncClient
from pytest_vllm_conformance.client.records import Response

T = TypeVar("T")


class Client:
    """Blocking calls onto :class:`AsyncClient`; ``run`` executes any coroutine on its loop."""

    def __init__(self, aio: AsyncClient) -> None:
        self.aio = aio
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-client", daemon=True
        )
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop every request runs on (the harness's self-check times it)."""
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, path: str, **kw: Any) -> Response:
        return self.run(self.aio.get(path, **kw))

    def post(self, path: str, body: Any, **kw: Any) -> Response:
        return self.run(self.aio.post(path, body, **kw))

    def stream(self, path: str, body: Any, **kw: Any) -> Response:
        return self.run(self.aio.stream(path, body, **kw))

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
