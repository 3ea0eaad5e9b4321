"""Embedding checks: order, indices, dimensions, base64 against float, usage."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.checks.semantics import Count
from pytest_vllm_conformance.failures import Severity

COUNT = Verdict("Wrong number of embeddings", Severity.HIGH)
ORDER = Verdict("Embeddings out of order", Severity.HIGH)
NOT_BASE64 = Verdict("base64 embedding is not base64", Severity.HIGH)
NOT_FLOAT32 = Verdict("base64 embedding is not float32", Severity.HIGH)
NOT_VECTOR = Verdict("Embedding is not a vector", Severity.HIGH)
DIMENSIONS = Verdict("Embeddings differ in dimension", Severity.HIGH)
DIFFERS = Verdict("{what} differs", Severity.HIGH)
NO_USAGE = Verdict("Embedding usage missing", Severity.MEDIUM)


@dataclass(frozen=True, kw_only=True)
class Same(Context):
    """The vector another request gave (``other``), what the pair is (``what``, which titles
    the failure) and the cosine distance allowed."""

    other: list[float]
    what: str
    tolerance: float = 1e-3


@check(COUNT, ORDER, NOT_BASE64, NOT_FLOAT32, NOT_VECTOR, values.INFINITE)
def vectors(body: dict[str, Any], ctx: Count) -> list[list[float]]:
    """``ctx.n`` items indexed 0..n-1 in order; returns their vectors (base64 decoded)."""
    expected, curl = ctx.n, ctx.curl
    data = body.get("data")
    if not isinstance(data, list) or len(data) != expected:
        raise COUNT.failure(
            path="$.data",
            expected=f"{expected} items",
            received=f"{len(data)}" if isinstance(data, list) else values.describe(data),
            curl=curl,
        )
    indices = [d.get("index") if isinstance(d, dict) else None for d in data]
    if indices != list(range(expected)):
        raise ORDER.failure(
            path="$.data[*].index",
            expected=repr(list(range(expected))),
            received=repr(indices),
            curl=curl,
        )
    return [decode(d.get("embedding"), Context(curl=curl)) for d in data]


@check(NOT_BASE64, NOT_FLOAT32, NOT_VECTOR, values.INFINITE)
def decode(value: Any, ctx: Context = NO_CONTEXT) -> list[float]:
    """An embedding is a list of finite numbers, or standard base64 of float32 values."""
    curl = ctx.curl
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise NOT_BASE64.failure(
                path="$.data[*].embedding",
                expected="standard base64 of float32 values",
                received=repr(value[:80]),
                curl=curl,
            ) from None
        if len(raw) % 4:
            raise NOT_FLOAT32.failure(
                path="$.data[*].embedding",
                expected="a multiple of 4 bytes",
                received=f"{len(raw)} bytes",
                curl=curl,
            )
        return finite_vector(list(struct.unpack(f"<{len(raw) // 4}f", raw)), ctx)
    if isinstance(value, list) and all(values.is_kind(x, float) for x in value):
        return finite_vector([float(x) for x in value], ctx)
    raise NOT_VECTOR.failure(
        path="$.data[*].embedding",
        expected="a list of numbers or a base64 string",
        received=repr(value)[:80],
        curl=curl,
    )


@check(values.INFINITE)
def finite_vector(vector: list[float], ctx: Context = NO_CONTEXT) -> list[float]:
    """Every component finite: a NaN makes every cosine NaN, and NaN passes any threshold."""
    for i, x in enumerate(vector):
        if not math.isfinite(x):
            raise values.INFINITE.failure(
                path=f"$.data[*].embedding[{i}]",
                expected="finite components",
                received=repr(x),
                curl=ctx.curl,
            )
    return vector


@check(DIMENSIONS)
def one_dimension(vecs: list[list[float]], ctx: Context = NO_CONTEXT) -> None:
    """Every vector of the model has one dimension, and it is not 0."""
    dims = sorted({len(v) for v in vecs})
    if len(dims) != 1 or dims[0] == 0:
        raise DIMENSIONS.failure(
            path="$.data[*].embedding",
            expected="one dimension for every vector",
            received=repr(dims),
            curl=ctx.curl,
        )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


@check(DIFFERS)
def same_vector(a: list[float], ctx: Same) -> None:
    """Equal up to float noise (batching may reorder sums): cosine within ``tolerance`` of 1."""
    b, tolerance = ctx.other, ctx.tolerance
    # not "> tolerance" alone: a NaN cosine (overflowing components) compares false
    if len(a) != len(b) or not 1 - cosine(a, b) <= tolerance:
        raise DIFFERS.titled(what=ctx.what).failure(
            path="$.data[*].embedding",
            expected=f"the same vector (cosine > {1 - tolerance})",
            received=f"cosine {cosine(a, b):.5f}"
            if len(a) == len(b)
            else f"dimensions {len(a)} and {len(b)}",
            curl=ctx.curl,
        )


@check(NO_USAGE)
def usage_counted(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """An embedding answer counts its prompt tokens in ``usage``."""
    usage = body.get("usage")
    tokens: Any = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not values.is_kind(tokens, int) or tokens <= 0:
        raise NO_USAGE.failure(
            path="$.usage.prompt_tokens",
            expected="a positive token count",
            received=repr(usage)[:80],
            curl=ctx.curl,
        )
