"""Batch-invariant Triton ops for deterministic inference under dynamic batching.

``enable()`` routes aten's mm, addmm, _log_softmax and mean.dim to kernels whose
reduction order does not depend on the batch; ``disable()`` restores the native kernels;
``batch_invariant()`` is the context-manager form. Setting ``BATCH_INVARIANT_OPS=1``
with this folder's ``sitecustomize.py`` on the path turns them on in every Python process
(vLLM's workers included) as soon as torch is imported.

Names load lazily, so ``batch_invariant_ops.autoload`` (run at every interpreter start by
sitecustomize) does not import torch and Triton itself.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_WHERE = {
    "matmul": "persistent_mm",
    "log_softmax": "rowwise",
    "mean": "rowwise",
    "batch_invariant": "override",
    "calls": "override",
    "disable": "override",
    "enable": "override",
    "is_enabled": "override",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
