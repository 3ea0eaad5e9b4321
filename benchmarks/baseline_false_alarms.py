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

``--n N`` makes each side N requests (split: two disjoint N-request draws, at most half a
level's), which is how the false-alarm rate by N in docs/baseline.md was measured;
``--min-requests 1`` judges every row whatever N (the rate without the comparison's minimums).
Both sides come from ONE run: this measures within-run noise only, not the variance between
two runs (another hour, another load on the host).

    python benchmarks/baseline_false_alarms.py RESULTS.json [MORE.json] [--trials 500]
        [--how split] [--n 24] [--min-requests 1] [--tolerance ttft_p95=off]

Prints the alarm rate with its 95% Wilson interval, and the keys that alarmed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
from collections import Counter
from pathlib import Path

from pytest_vllm_conformance.config.parsers import baseline_tolerance
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


def pair(
    level: LevelFigures, how: str, rng: random.Random, size: int | None = None
) -> tuple[LevelFigures, LevelFigures]:
    """Two same-distribution versions of ``level`` of ``size`` requests a side (default:
    half the level's requests when split, all of them when resampled)."""
    assert level.samples is not None
    n = level.samples.kept
    if how == "split":
        half = min(size or n // 2, n // 2)
        order = list(range(n))
        rng.shuffle(order)
        return _with(level, order[:half]), _with(level, order[half : 2 * half])
    k = size or n
    return (
        _with(level, [rng.randrange(n) for _ in range(k)]),
        _with(level, [rng.randrange(n) for _ in range(k)]),
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
    ap.add_argument(
        "--n",
        type=int,
        default=None,
        help="requests a side (split: at most half a level's; default: as the module says)",
    )
    ap.add_argument(
        "--min-requests",
        type=int,
        default=None,
        help="judge every percentile from this many requests a side (default: the "
        "comparison's own minimums, report.compare.MIN_REQUESTS)",
    )
    ap.add_argument("--tolerance", default="", help="as --vllm-baseline-tolerance")
    args = ap.parse_args(argv)
    tolerance = baseline_tolerance(args.tolerance)
    if args.min_requests is not None:
        compare.MIN_REQUESTS = dict.fromkeys(compare.MIN_REQUESTS, args.min_requests)
    rng = random.Random(args.seed)
    runs = [
        [lv for lv in compare.levels_of(compare.load(p)).values() if lv.samples is not None]
        for p in args.results
    ]
    alarms, keys = 0, Counter[str]()
    rows_per_trial = judged = 0
    for _ in range(args.trials):
        alarmed = False
        rows_per_trial = judged = 0
        for levels in runs:
            for level in levels:
                old, new = pair(level, args.how, rng, args.n)
                rows = compare.level_rows(old, new, tolerance)
                rows_per_trial += len(rows)
                judged += sum(r.verdict != "not compared" for r in rows)
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
        f"{levels} levels, {judged} of {rows_per_trial} rows judged per comparison"
        f"{f', {args.n} requests a side' if args.n else ''}, default tolerances"
    )
    for key, n in keys.most_common(10):
        print(f"  {key}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
