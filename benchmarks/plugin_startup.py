"""What the installed plugin adds to ``pytest --collect-only`` when no target is given.

Runs pytest in a fresh folder with one trivial test, alternating runs with the plugin
and with ``-p no:vllm_conformance``, and prints medians and the difference.

    python benchmarks/plugin_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_one.py").write_text("def test_one():\n    pass\n")
        base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        with_plugin, without = [], []
        for _ in range(runs):
            with_plugin.append(_time(base, folder))
            without.append(_time([*base, "-p", "no:vllm_conformance"], folder))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(f"pytest --collect-only, median of {runs} runs")
    print(f"  with the plugin:    {a * 1000:7.1f} ms")
    print(f"  without the plugin: {b * 1000:7.1f} ms")
    print(f"  the plugin adds:    {(a - b) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
