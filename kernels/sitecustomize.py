"""Turn the batch-invariant ops on in every Python process when BATCH_INVARIANT_OPS=1.

The image copies this file into site-packages; vLLM's worker processes then enable the
ops when they import torch, with no change to vLLM. BATCH_INVARIANT_OPS=0 turns it off.
"""

try:
    from batch_invariant_ops.autoload import install

    install()
except Exception as exc:  # never stop an interpreter from starting
    import sys

    sys.stderr.write(f"batch_invariant_ops: sitecustomize skipped: {exc}\n")
