"""Embedding checks: order, indices, dimensions, base64 against float, usage."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.failures import CheckFailure, Severity


def vectors(body: dict[str, Any], expected: int, curl: str = "") -> list[list[float]]:
    """``expected`` items indexed 0..n-1 in order; returns their vectors (base64 decoded)."""
    data = body.get("data")
    if not isinstance(data, list) or len(data) != expected:
        raise CheckFailure("Wrong number of embeddings", path="$.data",
                           expected=f"{expected} items",
                           received=f"{len(data)}" if isinstance(data, list)
                           else values.describe(data),
                           curl=curl, severity=Severity.HIGH)
    indices = [d.get("index") if isinstance(d, dict) else None for d in data]
    if indices != list(range(expected)):
        raise CheckFailure("Embeddings out of order", path="$.data[*].index",
                           expected=repr(list(range(expected))), received=repr(indices),
                           curl=curl, severity=Severity.HIGH)
    return [decode(d.get("embedding"), curl) for d in data]


def decode(value: Any, curl: str = "") -> list[float]:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CheckFailure("base64 embedding is not base64", path="$.data[*].embedding",
                               expected="standard base64 of float32 values",
                               received=repr(value[:80]), curl=curl,
                               severity=Severity.HIGH) from None
        if len(raw) % 4:
            raise CheckFailure("base64 embedding is not float32", path="$.data[*].embedding",
                               expected="a multiple of 4 bytes", received=f"{len(raw)} bytes",
                               curl=curl, severity=Severity.HIGH)
        return finite_vector(list(struct.unpack(f"<{len(raw) // 4}f", raw)), curl)
    if isinstance(value, list) and all(values.is_kind(x, float) for x in value):
        return finite_vector([float(x) for x in value], curl)
    raise CheckFailure("Embedding is not a vector", path="$.data[*].embedding",
                       expected="a list of numbers or a base64 string",
                       received=repr(value)[:80], curl=curl, severity=Severity.HIGH)


def finite_vector(vector: list[float], curl: str = "") -> list[float]:
    """Every component finite: a NaN makes every cosine NaN, and NaN passes any threshold."""
    for i, x in enumerate(vector):
        if not math.isfinite(x):
            raise CheckFailure(values.NON_FINITE, path=f"$.data[*].embedding[{i}]",
                               expected="finite components", received=repr(x), curl=curl,
                               severity=Severity.HIGH)
    return vector


def one_dimension(vecs: list[list[float]], curl: str = "") -> None:
    dims = sorted({len(v) for v in vecs})
    if len(dims) != 1 or dims[0] == 0:
        raise CheckFailure("Embeddings differ in dimension", path="$.data[*].embedding",
                           expected="one dimension for every vector", received=repr(dims),
                           curl=curl, severity=Severity.HIGH)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def same_vector(a: list[float], b: list[float], what: str, tolerance: float = 1e-3,
                curl: str = "") -> None:
    """Equal up to float noise (batching may reorder sums): cosine within ``tolerance`` of 1."""
    # not "> tolerance" alone: a NaN cosine (overflowing components) compares false
    if len(a) != len(b) or not 1 - cosine(a, b) <= tolerance:
        raise CheckFailure(f"{what} differs", path="$.data[*].embedding",
                           expected=f"the same vector (cosine > {1 - tolerance})",
                           received=f"cosine {cosine(a, b):.5f}" if len(a) == len(b)
                           else f"dimensions {len(a)} and {len(b)}", curl=curl,
                           severity=Severity.HIGH)


def usage_counted(body: dict[str, Any], curl: str = "") -> None:
    usage = body.get("usage")
    tokens: Any = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not values.is_kind(tokens, int) or tokens <= 0:
        raise CheckFailure("Embedding usage missing", path="$.usage.prompt_tokens",
                           expected="a positive token count", received=repr(usage)[:80],
                           curl=curl, severity=Severity.MEDIUM)
