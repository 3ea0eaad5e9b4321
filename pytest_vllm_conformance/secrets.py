"""A wrapper that keeps API keys out of reprs, reports, logs and error messages."""

from __future__ import annotations

REDACTED = "***"


class Secret:
    """A string that prints as ``***``; :meth:`reveal` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """Replace every occurrence of the secret in ``text`` (servers echo keys back), in the
        forms a server may echo it and as a fragment cut off by an excerpt."""
        from pytest_vllm_conformance.untrusted import redact

        return redact(text, [self._value])

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable, so it cannot leak through pickles")
