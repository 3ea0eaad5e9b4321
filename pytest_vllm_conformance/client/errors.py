"""Typed client failures: each carries one clear sentence and the request's ``curl`` line."""

from __future__ import annotations


class ClientError(Exception):
    """A request could not be completed or its answer could not be read."""

    title = "Request failed"

    def __init__(self, message: str, curl: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = message  # the cause alone, without the request in front
        self.curl = curl

    def __str__(self) -> str:
        return self.message


class ConnectError(ClientError):
    title = "Server unreachable"


class RequestTimeout(ClientError):
    title = "Request timed out"


class MalformedResponse(ClientError):
    title = "Malformed HTTP response"


class MalformedStream(ClientError):
    title = "Malformed SSE stream"


class BodyTooLarge(ClientError):
    title = "Response body too large"


class HeadersTooLarge(ClientError):
    title = "Response headers too large"
