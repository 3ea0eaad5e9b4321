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

- ``between``: no drawing: the files are separate runs of one unchanged server (same command,
  same build), and every ordered pair of them (either could have been the baseline) is one
  comparison with every level the two share: the false alarms from the variance between
  runs (another start, another minute of a shared host), which the two draws above cannot
  see. Runs made with ``--vllm-baseline-confirm=always`` hold a second measurement of every
  level, and a slowdown counts unless the second is within the tolerance, as the baseline suite
  decides (``--first-only``: the first alone, as ``--vllm-baseline-confirm=off``).

``--n N`` makes each side N requests (split: two disjoint N-request draws, at most half a
level's), which is how the false-alarm rate by N in docs/baseline.md was measured;
``--min-requests 1`` judges every row whatever N (the rate without the comparison's minimums).
With ``resample`` and ``split`` both sides come from ONE run: within-run noise only.

    python benchmarks/baseline_false_alarms.py RESULTS.json [MORE.json] [--trials 500]
        [--how split] [--n 24] [--min-requests 1] [--tolerance ttft_p95=off]
    python benchmarks/baseline_false_alarms.py --how between RUN1.json RUN2.json ... [--first-only]

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
    ap.add_argument("--how", choices=("resample", "split", "between"), default="resample")
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
    ap.add_argument(
        "--slower",
        type=float,
        default=1.0,
        help="between: make the new run's requests this many times slower (the gate's power)",
    )
    ap.add_argument(
        "--first-only",
        action="store_true",
        help="between: judge the first measurements alone (as --vllm-baseline-confirm=off)",
    )
    args = ap.parse_args(argv)
    tolerance = baseline_tolerance(args.tolerance)
    label = f"tolerance {args.tolerance}" if args.tolerance else "default tolerances"
    if args.min_requests is not None:
        compare.MIN_REQUESTS = dict.fromkeys(compare.MIN_REQUESTS, args.min_requests)
    if args.how == "between":
        return between(args.results, tolerance, label, not args.first_only, args.slower)
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
        f"{f', {args.n} requests a side' if args.n else ''}, {label}"
    )
    for key, n in keys.most_common(10):
        print(f"  {key}: {n}")
    return 0


def _slower(level: LevelFigures | None, factor: float) -> LevelFigures | None:
    """``level`` with every request ``factor`` times slower (an injected regression)."""
    if level is None or level.samples is None or factor == 1:
        return level
    s = level.samples
    scaled = [tuple(x * factor for x in v) for v in (s.ttft_ms, s.e2e_ms, s.itl_mean_ms)]
    return dataclasses.replace(level, samples=LevelSamples(s.seen, s.kept, s.seed, *scaled))


def between(
    paths: list[Path], tolerance: dict[str, float], label: str, confirm: bool, slower: float = 1
) -> int:
    """Every pair of real runs compared as ``vllm-conformance compare`` would (latency only):
    a slowdown stands only where the new run's second measurement of the level (runs made
    with ``--vllm-baseline-confirm=always``) is not within the tolerance, unless ``confirm``
    is False.
    ``slower`` > 1 makes every request of the new run that much slower (both measurements):
    the alarms are then detections, counted per level too (the gate's power)."""
    runs = [(_label(p), compare.measured_twice(compare.load(p))) for p in paths]
    levels_judged = levels_caught = 0
    alarms = comparisons = unjudged = withdrawn = once = 0
    for i, (old_name, old) in enumerate(runs):
        for j, (new_name, new) in enumerate(runs):
            if i == j:
                continue
            if confirm and any(again is None for _, again in new.values()):
                once += 1  # what the suite would measure again is not in the file
                continue
            rows = []
            for name, (first, again) in new.items():
                if name not in old:
                    continue
                found = compare.judged_level(
                    old[name][0],
                    _slower(first, slower) or first,
                    _slower(again, slower) if confirm else None,
                    tolerance,
                )
                rows += found
                if any(r.verdict != "not compared" for r in found):
                    levels_judged += 1
                    levels_caught += any(r.regressed for r in found)
            worse = [f"{r.level} {r.key} x{r.ratio:.2f}" for r in rows if r.regressed]
            passing = [
                f"{r.level} {r.key} x{r.ratio:.2f}" for r in rows if r.verdict == "not confirmed"
            ]
            judged = sum(r.verdict != "not compared" for r in rows)
            if not judged:  # nothing alike (another place, other requests): no comparison
                unjudged += 1
                print(f"  {old_name} -> {new_name}: nothing judged, left out")
                continue
            comparisons += 1
            alarms += bool(worse)
            withdrawn += bool(passing) and not worse
            print(
                f"  {old_name} -> {new_name}: {judged} rows judged, "
                f"{'; '.join(worse) if worse else 'no regression'}"
                + (f" (not confirmed: {'; '.join(passing)})" if passing else "")
            )
    if not comparisons:
        print("between: give two or more results files")
        return 2
    low, high = wilson(alarms, comparisons)
    if slower != 1:
        print(
            f"every request x{slower:g} slower: caught in {alarms} of {comparisons} comparisons; "
            f"{levels_caught} of {levels_judged} levels judged called regressed "
            f"({levels_caught / max(levels_judged, 1):.1%})"
        )
        return 0
    print(quiet_tolerances([(name, {k: v[0] for k, v in levels.items()}) for name, levels in runs]))
    print(
        f"between: {alarms} false alarms in {comparisons} comparisons of {len(runs)} runs "
        f"({alarms / comparisons:.1%}, 95% interval {low:.1%} to {high:.1%}; the pairs share "
        f"runs, so they are not independent), {label}, "
        + (
            f"second measurements used ({withdrawn} comparisons alarmed on the first alone)"
            if confirm
            else "first measurements alone"
        )
        + (f"; {unjudged} pairs judged nothing and are left out" if unjudged else "")
        + (
            f"; {once} pairs left out: their new run measured its levels once (make it with "
            "--vllm-baseline-confirm=always, or pass --first-only)"
            if once
            else ""
        )
    )
    return 0


def _label(path: Path) -> str:
    """The run's name: its file, or its folder for an output dir's ``results.json``."""
    return path.parent.name if path.name == "results.json" else path.name


def quiet_tolerances(runs: list[tuple[str, dict[str, LevelFigures]]]) -> str:
    """Per key, the largest "surely slower" factor any pair showed (the ratio, or its
    interval's low end if lower): a tolerance at or above it would have kept every pair of
    these runs quiet. How a host calibrates its own ``--vllm-baseline-tolerance``."""
    zero = {f"{m}_p{q}": 0.0 for m in compare.BASELINE_METRICS for q in (50, 90, 95)}
    worst: dict[str, float] = {}
    for old_name, old in runs:
        for new_name, new in runs:
            if new_name == old_name:
                continue
            for name in (n for n in old if n in new):
                for r in compare.level_rows(old[name], new[name], {**zero, "abs_ms": 0.0}):
                    if r.verdict != "not compared":
                        worst[r.key] = max(worst.get(r.key, 0.0), min(r.ratio, r.low))
    return "largest sure slowdown between these runs, per key: " + ", ".join(
        f"{k} x{v:.2f}" for k, v in sorted(worst.items())
    )


if __name__ == "__main__":
    raise SystemExit(main())
