"""A persistent Triton matmul whose reduction order never depends on the batch (M).

cuBLAS picks its algorithm (tile shape, split-K) from the problem size, so a row's result
changes with how many other rows share the call: that is what breaks determinism under
dynamic batching. Here the tile shape and the K loop are fixed per dtype and device, never
chosen from M, and each output tile is reduced by one program in one order; which program
(of the persistent grid) takes a tile changes nothing in its arithmetic.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

SUPPORTED = (torch.float16, torch.bfloat16, torch.float32)


# Triton decides at @triton.jit time whether a kernel is interpreted; read it once, with it.
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreting() -> bool:
    """The kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1 at import): CI's path."""
    return _INTERPRETING


@dataclass(frozen=True)
class Tiles:
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 8
    num_stages: int = 3


def tiles_for(dtype: torch.dtype) -> Tiles:
    """The one configuration for a dtype: a function of dtype and device only, never of M."""
    if interpreting():
        return Tiles(32, 32, 32, group_m=4)  # small: the interpreter runs ~2 ms per step
    if dtype == torch.float32:
        return Tiles(128, 128, 32)
    return Tiles(128, 256, 64)


@functools.cache
def _programs(device_index: int) -> int:
    if interpreting() or not torch.cuda.is_available():
        return 4
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


@triton.jit
def _matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    bias_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    stride_biasm,
    stride_biasn,
    alpha,
    beta,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    NUM_PROGRAMS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    USE_DOT: tl.constexpr,
    IEEE: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_in_group = GROUP_M * num_pid_n
    for tile in range(pid, num_pid_m * num_pid_n, NUM_PROGRAMS):
        # grouped order (L2 reuse on a GPU); it moves tiles between programs, not arithmetic
        first_m = (tile // num_in_group) * GROUP_M
        group_size = min(num_pid_m - first_m, GROUP_M)
        pid_m = first_m + (tile % num_in_group) % group_size
        pid_n = (tile % num_in_group) // group_size
        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask_m = offs_m[:, None] < M
        mask_n = offs_n[None, :] < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            offs_k = k * BLOCK_K + tl.arange(0, BLOCK_K)
            a = tl.load(
                a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
                mask=mask_m & (offs_k[None, :] < K),
                other=0.0,
            )
            b = tl.load(
                b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn,
                mask=(offs_k[:, None] < K) & mask_n,
                other=0.0,
            )
            if USE_DOT:
                if IEEE:  # noqa: SIM108  fp32 stays fp32 (torch's default), not TF32
                    acc = tl.dot(a, b, acc, input_precision="ieee")
                else:
                    acc = tl.dot(a, b, acc)
            else:
                # The interpreter runs tl.dot as numpy's BLAS matmul, whose rounding depends on
                # a row's place in the tile; this product-sum reduces k in order for every row.
                acc += tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)
        acc = acc * alpha
        if HAS_BIAS:
            bias = tl.load(
                bias_ptr + offs_m[:, None] * stride_biasm + offs_n[None, :] * stride_biasn,
                mask=mask_m & mask_n,
                other=0.0,
            )
            acc += beta * bias.to(tl.float32)
        tl.store(
            c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn,
            acc.to(c_ptr.dtype.element_ty),
            mask=mask_m & mask_n,
        )


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    tiles: Tiles | None = None,
) -> torch.Tensor:
    """``beta * bias + alpha * (a @ b)`` for 2-D ``a`` and ``b`` of one supported dtype.

    ``tiles`` exists for the negative control in the tests; callers leave it alone.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain")
    if a.dtype != b.dtype or a.dtype not in SUPPORTED:
        raise TypeError(f"matmul: dtypes {a.dtype}, {b.dtype} (supported: one of {SUPPORTED})")
    M, K = a.shape
    N = b.shape[1]
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M == 0 or N == 0:
        return c
    t = tiles or tiles_for(a.dtype)
    if bias is not None:
        bias = bias.expand(M, N)  # a stride-0 view: a 1-D bias is read, never copied
    n_tiles = triton.cdiv(M, t.block_m) * triton.cdiv(N, t.block_n)
    programs = min(n_tiles, _programs(a.device.index or 0))
    _matmul_kernel[(programs,)](
        a,
        b,
        c,
        bias if bias is not None else c,
        M,
        N,
        K,
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
        bias.stride(0) if bias is not None else 0,
        bias.stride(1) if bias is not None else 0,
        float(alpha),
        float(beta),
        BLOCK_M=t.block_m,
        BLOCK_N=t.block_n,
        BLOCK_K=t.block_k,
        GROUP_M=t.group_m,
        NUM_PROGRAMS=programs,
        HAS_BIAS=bias is not None,
        USE_DOT=not interpreting(),
        IEEE=a.dtype == torch.float32,
        num_warps=t.num_warps,
        num_stages=t.num_stages,
    )
    return c
