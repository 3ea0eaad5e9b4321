"""kernels/: bitwise batch invariance, accuracy, routing, restore, auto-enable.

On a machine without a GPU the kernels run on Triton's CPU interpreter (CI's case); with one
they run natively and bf16 joins the dtypes (the interpreter's bf16 tl.dot is broken, and
its fp32->bf16 casts truncate). Invariance is always the kernel against itself: plain
torch on this CPU is not batch-invariant, so it cannot be the reference for that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

GPU = torch.cuda.is_available()
_saved = os.environ.get("TRITON_INTERPRET")
if not GPU:  # decided when the kernels are decorated, so only around their import
    os.environ["TRITON_INTERPRET"] = "1"
import batch_invariant_ops as bio  # noqa: E402
from batch_invariant_ops.persistent_mm import Tiles, tiles_for  # noqa: E402

if _saved is None:
    os.environ.pop("TRITON_INTERPRET", None)  # keep it out of the engines started later
else:
    os.environ["TRITON_INTERPRET"] = _saved

DEVICE = "cuda" if GPU else "cpu"
KEY = "CUDA" if GPU else "CPU"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if GPU else [])
EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
KERNELS = Path(__file__).resolve().parent.parent / "kernels"
FEW = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton reads TRITON_INTERPRET again at launch: set it for these tests only, so the
    real engines other tests start never inherit it."""
    if not GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


MatMul = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def randn(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device=DEVICE, dtype=dtype)


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.shape == y.shape and torch.equal(
        x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)
    )


def mm_invariance(mm: MatMul) -> Callable[..., None]:
    """The property, for any matmul: row i alone has the bits of row i in the batch."""

    @FEW
    @given(
        dtype=st.sampled_from(DTYPES),
        batch=st.integers(1, 48),
        k=st.integers(1, 96),
        n=st.integers(1, 40),
        row=st.integers(0, 47),
        seed=st.integers(0, 2**16),
    )
    @example(dtype=torch.float32, batch=8, k=96, n=8, row=3, seed=1)
    def prop(dtype: torch.dtype, batch: int, k: int, n: int, row: int, seed: int) -> None:
        row %= batch
        a, b = randn(seed, batch, k, dtype=dtype), randn(seed + 1, k, n, dtype=dtype)
        together = mm(a, b)
        alone = mm(a[row : row + 1], b)
        assert same_bits(alone[0], together[row]), (dtype, batch, k, n, row)

    return prop


def test_mm_row_alone_equals_row_in_any_batch() -> None:
    mm_invariance(bio.matmul)()


def test_the_property_fails_for_a_batch_dependent_matmul() -> None:
    """Negative control: a split of K chosen by batch size (what cuBLAS heuristics do)."""

    def batch_dependent(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        t = tiles_for(a.dtype)
        k = t.block_k // 2 if a.shape[0] == 1 else t.block_k
        out: torch.Tensor = bio.matmul(a, b, tiles=Tiles(t.block_m, t.block_n, k))
        return out

    with pytest.raises(AssertionError):
        mm_invariance(batch_dependent)()


@FEW
@given(
    dtype=st.sampled_from(DTYPES),
    batch=st.integers(1, 24),
    k=st.integers(1, 80),
    n=st.integers(1, 40),
    row=st.integers(0, 23),
    seed=st.integers(0, 2**16),
    bias_2d=st.booleans(),
)
def test_addmm_row_alone_equals_row_in_batch(
    dtype: torch.dtype, batch: int, k: int, n: int, row: int, seed: int, bias_2d: bool
) -> None:
    row %= batch
    a, b = randn(seed, batch, k, dtype=dtype), randn(seed + 1, k, n, dtype=dtype)
    bias = randn(seed + 2, batch, n, dtype=dtype) if bias_2d else randn(seed + 2, n, dtype=dtype)
    together = bio.matmul(a, b, bias, alpha=0.5, beta=2.0)
    alone = bio.matmul(
        a[row : row + 1], b, bias[row : row + 1] if bias_2d else bias, alpha=0.5, beta=2.0
    )
    assert same_bits(alone[0], together[row])


@FEW
@given(
    dtype=st.sampled_from(DTYPES),
    batch=st.integers(1, 24),
    n=st.integers(1, 300),
    row=st.integers(0, 23),
    seed=st.integers(0, 2**16),
)
def test_log_softmax_and_mean_rows_alone_equal_rows_in_batch(
    dtype: torch.dtype, batch: int, n: int, row: int, seed: int
) -> None:
    row %= batch
    x = randn(seed, batch, n, dtype=dtype) * 4
    assert same_bits(bio.log_softmax(x[row : row + 1], -1)[0], bio.log_softmax(x, -1)[row])
    assert same_bits(bio.mean(x[row : row + 1], [1])[0], bio.mean(x, [1])[row])


@FEW
@given(
    dtype=st.sampled_from(DTYPES),
    m=st.integers(1, 40),
    k=st.integers(1, 96),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_matmul_accuracy_against_float64(
    dtype: torch.dtype, m: int, k: int, n: int, seed: int
) -> None:
    """|C - C64| <= (|A| @ |B|) * (k * 2^-24 + eps(dtype)): fp32 accumulation, one rounding."""
    a, b = randn(seed, m, k, dtype=dtype), randn(seed + 1, k, n, dtype=dtype)
    exact = a.double() @ b.double()
    bound = (a.double().abs() @ b.double().abs()) * (k * 2.0**-24 + EPS[dtype]) + 1e-30
    assert ((bio.matmul(a, b).double() - exact).abs() <= bound).all()


@FEW
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(1, 8),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_reductions_accuracy_against_float64(
    dtype: torch.dtype, rows: int, n: int, seed: int
) -> None:
    """log_softmax within 8 n 2^-24 (1 + |y|) + eps|y|; mean within n 2^-24 mean|x| + eps|m|."""
    x = randn(seed, rows, n, dtype=dtype) * 4
    x64 = x.double()
    y, y64 = bio.log_softmax(x, 1).double(), torch.log_softmax(x64, 1)
    assert ((y - y64).abs() <= 8 * n * 2.0**-24 * (1 + y64.abs()) + EPS[dtype] * y64.abs()).all()
    m, m64 = bio.mean(x, [1]).double(), x64.mean(1)
    assert ((m - m64).abs() <= n * 2.0**-24 * x64.abs().mean(1) + EPS[dtype] * m64.abs()).all()


def test_the_override_routes_torch_and_restores_native_kernels() -> None:
    a, w, bias = randn(1, 6, 40), randn(2, 24, 40), randn(3, 24)
    x = randn(4, 3, 5, 40)
    native = [
        torch.mm(a, w.t()),
        F.linear(a, w, bias),
        torch.log_softmax(a, -1),
        a.mean(1),
        x.mean((0, 2), keepdim=True),
    ]
    before = bio.calls.copy()
    with bio.batch_invariant(KEY):
        assert bio.is_enabled()
        routed = [
            torch.mm(a, w.t()),
            F.linear(a, w, bias),
            torch.log_softmax(a, -1),
            a.mean(1),
            x.mean((0, 2), keepdim=True),
        ]
        F.linear(x, w)  # 3-D input, no bias
        assert same_bits(routed[0], bio.matmul(a, w.t()))
        assert same_bits(routed[1], bio.matmul(a, w.t(), bias))
        assert same_bits(routed[2], bio.log_softmax(a, -1))
        assert same_bits(routed[3], bio.mean(a, [1]))
    used = bio.calls - before
    assert used["mm"] >= 2 and used["addmm"] >= 1 and used["_log_softmax"] >= 1
    assert used["mean.dim"] >= 2
    for got, want in zip(routed, native, strict=True):
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    # restored exactly: the native kernels again, bit for bit, and no more calls to ours
    after = bio.calls.copy()
    again = [
        torch.mm(a, w.t()),
        F.linear(a, w, bias),
        torch.log_softmax(a, -1),
        a.mean(1),
        x.mean((0, 2), keepdim=True),
    ]
    assert not bio.is_enabled() and bio.calls == after
    assert all(same_bits(g, n) for g, n in zip(again, native, strict=True))


def test_backward_and_other_dtypes_under_the_override() -> None:
    a = randn(5, 4, 16).requires_grad_()
    w = randn(6, 8, 16).requires_grad_()
    with bio.batch_invariant(KEY):
        F.linear(a, w).log_softmax(-1).mean(-1).sum().backward()  # type: ignore[no-untyped-call]
        d = torch.mm(a.detach().double(), w.detach().double().t())  # fp64: the native path
    assert a.grad is not None and w.grad is not None and torch.isfinite(a.grad).all()
    assert torch.allclose(d, a.detach().double() @ w.detach().double().t())


def test_enable_twice_for_another_key_is_refused() -> None:
    other = "CPU" if KEY == "CUDA" else "CUDA"
    with bio.batch_invariant(KEY):
        bio.enable(KEY)  # idempotent
        with pytest.raises(RuntimeError, match="already enabled"):
            bio.enable(other)
    assert not bio.is_enabled()


def _python(code: str, switch: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(KERNELS),
        "BATCH_INVARIANT_OPS": switch,
        "BATCH_INVARIANT_OPS_KEY": KEY,
    }
    if not GPU:
        env["TRITON_INTERPRET"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(("switch", "expected"), [("1", "True 1"), ("0", "False 0")])
def test_sitecustomize_enables_on_import_of_torch(switch: str, expected: str) -> None:
    code = (
        "import sys; assert 'torch' not in sys.modules\n"
        "import torch, batch_invariant_ops as b\n"
        f"torch.mm(torch.ones(2, 3, device='{DEVICE}'), torch.ones(3, 4, device='{DEVICE}'))\n"
        "print(b.is_enabled(), b.calls['mm'])"
    )
    assert _python(code, switch) == expected
