"""Row-wise log_softmax and mean in Triton: one program per row, a fixed block loop.

Each row is reduced by one program in one order (blocks of a fixed size, left to right),
so its result cannot depend on how many rows are in the call or where the row sits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from batch_invariant_ops.persistent_mm import SUPPORTED, interpreting

_BLOCK = 1024


def _block() -> int:
    return 128 if interpreting() else _BLOCK


@triton.jit
def _log_softmax_kernel(x_ptr, y_ptr, stride_x, stride_y, N, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    y_row = y_ptr + row * stride_y
    running = tl.full([BLOCK], -float("inf"), dtype=tl.float32)
    for start in range(0, N, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs, mask=offs < N, other=-float("inf")).to(tl.float32)
        running = tl.maximum(running, x)
    top = tl.max(running, axis=0)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, N, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs, mask=offs < N, other=-float("inf")).to(tl.float32)
        total += tl.exp(x - top)
    lse = top + tl.log(tl.sum(total, axis=0))
    for start in range(0, N, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs, mask=offs < N, other=0.0).to(tl.float32)
        tl.store(y_row + offs, (x - lse).to(y_ptr.dtype.element_ty), mask=offs < N)


@triton.jit
def _mean_kernel(x_ptr, y_ptr, stride_x, N, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, N, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        total += tl.load(x_row + offs, mask=offs < N, other=0.0).to(tl.float32)
    tl.store(y_ptr + row, (tl.sum(total, axis=0) / N).to(y_ptr.dtype.element_ty))


def _rows(x: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, list[int], int]:
    """``x`` with ``dims`` moved last and flattened: (2-D rows view, kept sizes, row length)."""
    dims = sorted({d % x.dim() for d in dims}) if x.dim() else []
    kept = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*kept, *dims).contiguous()
    n = 1
    for d in dims:
        n *= x.shape[d]
    return moved.reshape(-1, n), [x.shape[d] for d in kept], n


def log_softmax(x: torch.Tensor, dim: int, half_to_float: bool = False) -> torch.Tensor:
    """``torch.log_softmax(x, dim)``; float32 out for a half input when ``half_to_float``."""
    if x.dtype not in SUPPORTED:
        raise TypeError(f"log_softmax: dtype {x.dtype} (supported: {SUPPORTED})")
    out_dtype = torch.float32 if half_to_float else x.dtype
    if x.dim() == 0:
        return torch.zeros((), dtype=out_dtype, device=x.device)
    dim %= x.dim()
    moved = x.movedim(dim, -1).contiguous()
    rows = moved.reshape(-1, moved.shape[-1])
    y = torch.empty(rows.shape, dtype=out_dtype, device=x.device)
    if rows.numel():
        _log_softmax_kernel[(rows.shape[0],)](
            rows, y, rows.stride(0), y.stride(0), rows.shape[1], BLOCK=_block()
        )
    return y.reshape(moved.shape).movedim(-1, dim)


def mean(
    x: torch.Tensor,
    dims: Sequence[int] | None,
    keepdim: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``x.mean(dims, keepdim, dtype=dtype)``; ``dims`` None or empty means every dim."""
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype not in SUPPORTED:
        raise TypeError(f"mean: dtype {x.dtype} (supported: {SUPPORTED})")
    all_dims = list(range(x.dim())) if not dims else [d % x.dim() for d in dims]
    rows, kept, n = _rows(x, all_dims)
    y = torch.empty(rows.shape[0], dtype=x.dtype, device=x.device)
    if n == 0:
        y.fill_(float("nan"))
    elif rows.shape[0]:
        _mean_kernel[(rows.shape[0],)](rows, y, rows.stride(0), n, BLOCK=_block())
    if keepdim:
        return y.reshape([1 if d in all_dims else x.shape[d] for d in range(x.dim())])
    return y.reshape(kept)
