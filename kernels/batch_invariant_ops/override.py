"""Route aten's mm, addmm, _log_softmax and mean.dim to the batch-invariant kernels.

The kernels are registered with ``torch.library`` for one dispatch key (CUDA in a
deployment, CPU for the interpreter tests), beneath autograd, so ``torch.mm``,
``F.linear``, ``torch.log_softmax``, ``Tensor.mean`` and their backward passes all take
them. :func:`disable` destroys the library registration, which puts the native kernels
back exactly. Inputs the kernels do not cover (other dtypes) take a native path that
avoids the overridden op (bmm, baddbmm, logsumexp, sum), so nothing recurses.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from batch_invariant_ops.persistent_mm import SUPPORTED, matmul
from batch_invariant_ops.rowwise import log_softmax, mean

calls: Counter[str] = Counter()  # how often each override ran: the tests' proof of routing
_lock = threading.Lock()
_library: torch.library.Library | None = None
_key = ""


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    calls["mm"] += 1
    if a.dtype in SUPPORTED and a.dtype == b.dtype:
        return matmul(a, b)
    return torch.bmm(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0)


def _addmm(
    bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1
) -> torch.Tensor:
    calls["addmm"] += 1
    if a.dtype in SUPPORTED and a.dtype == b.dtype == bias.dtype:
        return matmul(a, b, bias, alpha=alpha, beta=beta)
    return torch.baddbmm(bias, a.unsqueeze(0), b.unsqueeze(0), beta=beta, alpha=alpha).squeeze(0)


def _log_softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    calls["_log_softmax"] += 1
    if x.dtype in SUPPORTED:
        return log_softmax(x, dim, half_to_float)
    x = x.float() if half_to_float else x
    return x - torch.logsumexp(x, dim, keepdim=True)


def _mean_dim(
    x: torch.Tensor,
    dim: Sequence[int] | None,
    keepdim: bool = False,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    calls["mean.dim"] += 1
    if (dtype or x.dtype) in SUPPORTED:
        return mean(x, dim, keepdim, dtype)
    if not (dtype or x.dtype).is_floating_point and not (dtype or x.dtype).is_complex:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either "
            f"a floating point or complex dtype. Got: {x.dtype}"
        )
    dims = list(dim) if dim else list(range(x.dim()))
    count = 1
    for d in dims:
        count *= x.shape[d]
    return torch.sum(x, dims, keepdim=keepdim, dtype=dtype) / count


OPS = {"mm": _mm, "addmm": _addmm, "_log_softmax": _log_softmax, "mean.dim": _mean_dim}


def enable(key: str = "CUDA") -> None:
    """Route the four ops to the kernels for dispatch key ``key`` ("CUDA" or "CPU")."""
    global _library, _key
    with _lock:
        if _library is not None:
            if _key == key:
                return
            raise RuntimeError(
                f"batch-invariant ops are already enabled for {_key}; disable() them first"
            )
        library = torch.library.Library("aten", "IMPL")
        with warnings.catch_warnings():  # "Overriding a previously registered kernel": wanted
            warnings.simplefilter("ignore", UserWarning)
            for name, fn in OPS.items():
                library.impl(name, fn, key)
        _library, _key = library, key


def disable() -> None:
    """Put the native kernels back (a no-op when not enabled)."""
    global _library, _key
    with _lock:
        if _library is not None:
            _library._destroy()
        _library, _key = None, ""


def is_enabled() -> bool:
    return _library is not None


@contextmanager
def batch_invariant(key: str = "CUDA") -> Iterator[None]:
    """Kernels on inside the block, the previous state back after it."""
    was, previous = is_enabled(), _key
    if was and previous != key:
        disable()
    enable(key)
    try:
        yield
    finally:
        disable()
        if was:
            enable(previous)
