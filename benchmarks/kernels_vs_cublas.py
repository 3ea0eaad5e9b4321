"""Throughput of the batch-invariant matmul against torch's native mm (cuBLAS), on a GPU.

    python benchmarks/kernels_vs_cublas.py [--dtype bf16] [--ms 1 16 128 1024 4096]

Shapes are those of 7-8B models' linear layers (K x N: 4096 x 4096, 4096 x 14336,
14336 x 4096, 4096 x 12288); M is the number of tokens in the batch. Prints a Markdown
table of TFLOP/s and the ratio ours / cuBLAS. Needs CUDA: Triton's CPU interpreter says
nothing about speed.
"""

from __future__ import annotations

import argparse
import sys

SHAPES = ((4096, 4096), (4096, 14336), (14336, 4096), (4096, 12288))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--ms", type=int, nargs="+", default=[1, 16, 128, 1024, 4096])
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU (none is visible)", file=sys.stderr)
        return 2
    import triton.testing
    from batch_invariant_ops import matmul

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    print(f"{torch.cuda.get_device_name()}, {args.dtype}, torch {torch.__version__}")
    print("| M | K | N | cuBLAS TFLOP/s | batch-invariant TFLOP/s | ratio |")
    print("|---|---|---|---|---|---|")
    for k, n in SHAPES:
        b = torch.randn(k, n, device="cuda", dtype=dtype)
        for m in args.ms:
            a = torch.randn(m, k, device="cuda", dtype=dtype)
            flops = 2 * m * n * k
            native = triton.testing.do_bench(lambda a=a, b=b: torch.mm(a, b))
            ours = triton.testing.do_bench(lambda a=a, b=b: matmul(a, b))
            print(
                f"| {m} | {k} | {n} | {flops / native / 1e9:.1f} | "
                f"{flops / ours / 1e9:.1f} | {native / ours:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
