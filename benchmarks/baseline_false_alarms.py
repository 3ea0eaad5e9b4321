"""How often the default latency comparison cries regression when nothing changed.

Takes the latency levels (with raw samples) of one or more real results files and, for each
trial, builds two runs drawn from the same distribution, then compares them with the default
tolerances (``report.compare.level_rows``, the function ``--vllm-baseline`` and
``vllm-conformance compare`` use). A trial is a false alarm when ANY row of ANY level says
"regression": the whole comparison would fail, which is what an operator sees.

Two ways to draw the pair, per level:

- ``resample`` (default): both sides are drawn with replacement from the level's samples,
  as many as it has: two runs of the same server, with the level's own spread;
- ``split``: the level's requests are shuffled and cut in two halves: two runs of half the
  size, without any request shared.

    python benchmarks/baseline_false_alarms.py RESULTS.json [MORE.json] [--trials 500]

Prints the alarm rate with its 95% Wilson interval, and the keys that alarmed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
from collections import Counter
from pathlib import Path

from pytest_vllm_conformance.perf.latency import LevelFigures, LevelSamples
from pytest_vllm_conformance.report import compare


def _with(level: LevelFigures, rows: list[int]) -> LevelFigures:
    s = level.samples
    assert s is not None
    picked = LevelSamples(
        len(rows),
        len(rows),
        s.seed,
        tuple(s.ttft_ms[i] for i in rows),
        tuple(s.e2e_ms[i] for i in rows),
        tuple(s.itl_mean_ms[i] for i in rows),
    )
    return dataclasses.replace(level, samples=picked)


def pair(level: LevelFigures, how: str, rng: random.Random) -> tuple[LevelFigures, LevelFigures]:
    """Two same-distribution versions of ``level`` (see the module's docstring)."""
    assert level.samples is not None
    n = level.samples.kept
    if how == "split":
        order = list(range(n))
        rng.shuffle(order)
        return _with(level, order[: n // 2]), _with(level, order[n // 2 :])
    return (
        _with(level, [rng.randrange(n) for _ in range(n)]),
        _with(level, [rng.randrange(n) for _ in range(n)]),
    )


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate of k in n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--how", choices=("resample", "split"), default="resample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    runs = [
        [lv for lv in compare.levels_of(compare.load(p)).values() if lv.samples is not None]
        for p in args.results
    ]
    alarms, keys = 0, Counter[str]()
    rows_per_trial = 0
    for _ in range(args.trials):
        alarmed = False
        rows_per_trial = 0
        for levels in runs:
            for level in levels:
                old, new = pair(level, args.how, rng)
                rows = compare.level_rows(old, new)
                rows_per_trial += len(rows)
                for r in rows:
                    if r.regressed:
                        alarmed = True
                        keys[f"{r.level} {r.key}"] += 1
        alarms += alarmed
    low, high = wilson(alarms, args.trials)
    levels = sum(len(r) for r in runs)
    print(
        f"{args.how}: {alarms} false alarms in {args.trials} comparisons "
        f"({alarms / args.trials:.1%}, 95% interval {low:.1%} to {high:.1%}); "
        f"{levels} levels, {rows_per_trial} judged rows per comparison, default tolerances"
    )
    for key, n in keys.most_common(10):
        print(f"  {key}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
