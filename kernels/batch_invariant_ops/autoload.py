"""Enable the ops in a process as soon as it imports torch, driven by the environment.

Used by ``sitecustomize.py``: importing torch (and Triton) at interpreter start would cost
every Python process a second or more, so a one-shot import hook waits for the process's
own ``import torch`` and enables the ops right after it. Environment:
``BATCH_INVARIANT_OPS=1`` turns it on; ``BATCH_INVARIANT_OPS_KEY`` picks the dispatch
key (default CUDA; CPU for tests under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

ON = ("1", "true", "on", "yes")


def wanted() -> bool:
    return os.environ.get("BATCH_INVARIANT_OPS", "").strip().lower() in ON


def _enable_now() -> None:
    try:
        from batch_invariant_ops.override import enable

        enable(os.environ.get("BATCH_INVARIANT_OPS_KEY", "CUDA"))
    except Exception as exc:  # a broken hook must never stop the process
        sys.stderr.write(f"batch_invariant_ops: not enabled: {type(exc).__name__}: {exc}\n")


class _AfterTorch(importlib.abc.MetaPathFinder):
    """Finds torch through the other finders and runs the enable step after it loads."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "torch":
            return None
        sys.meta_path.remove(self)  # one shot; the lookup below must not find us again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_enable(module: ModuleType) -> None:
            exec_module(module)
            _enable_now()

        loader.exec_module = exec_then_enable  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Enable now if torch is already loaded, else right after the process imports it."""
    if not wanted():
        return
    if "torch" in sys.modules:
        _enable_now()
    elif not any(isinstance(f, _AfterTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorch())
