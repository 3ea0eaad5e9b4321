"""Compare a run with an earlier one: greedy outputs, latency per level and metric, test outcomes.

One comparison serves three places: the baseline suite's checks (``--vllm-baseline``), the
``comparison`` section of the results document (terminal summary and HTML report), and
``vllm-conformance compare OLD NEW``. Both sides are results documents
(``schemas/results-1.schema.json``); what is compared:

- **Outputs**: each determinism prompt's greedy answer (measurement ``greedy_output``) must be
  the same text (by its exact hash) and the same token ids where both runs have them.
- **Latency**: per load level present in both runs with raw samples (``latency_level``'s
  ``samples``), per metric (TTFT, the per-request mean ITL, E2E) and per percentile of the
  tolerance table. A regression is a slowdown beyond its tolerance that is significant: the
  95% interval of the ratio new/old, from a seeded bootstrap of both sides' samples, lies
  wholly above ``1 + tolerance`` (so the ratio itself does too), and the slowdown exceeds
  ``abs_ms``. Testing the margin, not ``ratio > 1``, is what keeps a comparison of ~30 rows
  (5 levels x 3 metrics x p50/p95) from false alarms: ``ratio > 1 + tol and interval above
  1`` alarmed in 17-21% of same-server comparisons, the margin test in ~2%
  (``benchmarks/baseline_false_alarms.py``, docs/baseline.md). A percentile is judged only
  from :data:`MIN_REQUESTS` requests a side (the false-alarm rate grows as they shrink), and
  a level only against one of the same max_tokens and prompts (its recorded ``workload``).
  An improvement is the mirror image (interval wholly below ``1 / (1 + tolerance)``); it is
  reported, never failed. Where the new run measured a level a second time (the baseline
  suite does so where the first measurement regressed), a regression stands unless the
  second measurement is within the tolerance; then it is "not confirmed", shown, not failed
  (:func:`confirmed_rows`).
- **Conformance**: tests that passed in the old run and fail (or error) in the new one are
  regressions, those that passed and now find their feature not supported (or are gone) are
  capabilities lost, a regression too; failed-then-passing tests are fixes.

Why a bootstrap of the percentile ratio (docs/baseline.md has the long form): the tolerance is
stated on percentiles (p50, p95), so the test is about the same quantity; a rank test
(Mann-Whitney U) answers "is one distribution shifted", which a change in the tail alone
(p95 worse, p50 the same) may not show, and says nothing about the ratio's size. The
bootstrap is distribution-free, needs no normality, and its interval is what the table shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vllm_conformance.config.parsers import (
    BASELINE_METRICS,
    BASELINE_SCHEMAS,
    BASELINE_TOLERANCE_DEFAULTS,
)

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import LevelFigures
    from pytest_vllm_conformance.workload.determinism import GreedyOutput

RESAMPLES = 2000
CONFIDENCE = 0.95
#: The fewest requests a side for a percentile to be judged; fewer: "not compared (too few
#: requests)". The bootstrap's interval is too narrow on few requests, the more so the further
#: into the tail: judging every row, split halves of a real run alarmed in 24-27% of
#: comparisons at 5 requests a side, 9% at 16, 5-7% at 24, 3% at 32 to 50. With these
#: minimums a default comparison (5 levels, p50 and p95 of 3 metrics) stayed at or below 3.8%
#: at every size it judges (docs/baseline.md). p50 and p95 are measured; p90 takes p95's and
#: p99 the same "two requests beyond the percentile" (not measured: the runs had 100 a level).
MIN_REQUESTS: dict[int, int] = {50: 20, 90: 40, 95: 40, 99: 200}


def min_requests(q: int) -> int:
    """The fewest requests a side with which percentile ``q`` is judged."""
    return MIN_REQUESTS.get(q, max(MIN_REQUESTS.values()))


FAILED = ("failed", "error")
NOT_SUPPORTED = "not supported"
MISSING = "not run"
MAX_DEPTH = 64  # a results document nests about 8 deep


# -- the documents --------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> str:
    return Path(path).read_text(encoding="utf-8")


def load(path: Path) -> dict[str, Any]:
    """A results document from its file or a certification bundle folder (``results.json``);
    ValueError with one sentence when it is none (:func:`validate`)."""
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = json.loads(_read(str(path), path.stat().st_mtime))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable results file ({type(exc).__name__})") from None
    return validate(doc, str(path))


def validate(doc: Any, where: str) -> dict[str, Any]:
    """``doc`` if it is a results document every reader of a comparison can use: nested at
    most :data:`MAX_DEPTH` deep (deeper would exhaust the recursion of every JSON walker),
    then valid against ``schemas/results-1.schema.json`` (the schema id, ``tests`` a list of
    objects with nodeid, suite and outcome, the target's identity, the options...). Else
    ValueError with one sentence: the same for ``--vllm-baseline`` and
    ``vllm-conformance compare``."""
    if not isinstance(doc, dict) or doc.get("schema") not in BASELINE_SCHEMAS:
        schema = doc.get("schema") if isinstance(doc, dict) else None
        raise ValueError(
            f"{where} is not a pytest-vllm-conformance results file "
            f"(schema {str(schema)[:60]!r}, expected {BASELINE_SCHEMAS[0]!r})"
        )
    if _depth(doc) > MAX_DEPTH:
        raise ValueError(
            f"{where} is not a usable results file (nested more than {MAX_DEPTH} deep)"
        )
    from jsonschema import Draft202012Validator

    from pytest_vllm_conformance.report.results import SCHEMA_FILE

    validator = Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    error = next(iter(validator.iter_errors(doc)), None)
    if error is not None:
        from pytest_vllm_conformance.untrusted import line

        at = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
        raise ValueError(
            f"{where} is not a usable results file: at {line(at, 120)}, {line(error.message, 200)}"
        )
    return doc


def _depth(doc: Any) -> int:
    """How deep ``doc`` nests (iteratively: a deep document must not exhaust the stack);
    stops counting past :data:`MAX_DEPTH`."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            stack += [(v, depth + 1) for v in children if isinstance(v, dict | list)]
    return deepest


@dataclass(frozen=True)
class Identity:
    """The server a run judged, as the results name it."""

    engine: str
    version: str
    model: str
    fingerprint: str
    url: str
    started: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Identity:
        target = doc.get("target") if isinstance(doc.get("target"), dict) else {}
        assert isinstance(target, dict)

        def text(key: str) -> str:
            value = target.get(key)
            return str(value) if value is not None else "-"

        return cls(
            text("engine"),
            text("engine_version"),
            text("model"),
            text("system_fingerprint"),
            text("url"),
            str(doc.get("started") or "-"),
        )

    def describe(self) -> str:
        return (
            f"{self.engine} {self.version}, model {self.model}, fingerprint {self.fingerprint}, "
            f"{self.url}, started {self.started}"
        )


def _measurements(doc: dict[str, Any], replayed: bool | None = None) -> Iterable[Any]:
    """The run's measurements, rebuilt; ``replayed`` True: only the baseline suite's tests',
    False: all but theirs."""
    from pytest_vllm_conformance.report.measurements import load as rebuild

    for test in doc.get("tests") or []:
        if not isinstance(test, dict) or not isinstance(test.get("measurements"), list):
            continue
        if replayed is not None and (test.get("suite") == "baseline") != replayed:
            continue
        try:
            yield from rebuild(test["measurements"])
        except (KeyError, TypeError, ValueError, RecursionError):  # that test's are lost
            continue


def levels_of(doc: dict[str, Any]) -> dict[str, LevelFigures]:
    """Every latency level of the run by name, as a baseline: the run's own measurement (the
    latency suite's, or a user's test), made with the settings its ``options`` record, else
    the baseline suite's (first) measurement of it; never a second measurement. Within one
    side, the last recorded wins."""
    own, replays, _ = _levels(doc)
    return {**replays, **own}


def measured_twice(doc: dict[str, Any]) -> dict[str, tuple[LevelFigures, LevelFigures | None]]:
    """Per level name, the run being judged: (what its baseline suite judged, the second
    measurement of it or None). What the suite judged is its own measurement where it made
    one (a level this process did not measure: an older baseline without places, or another
    xdist worker's), else the run's; the second is the one flagged ``second``. Chosen by
    role, never by report order."""
    own, replays, seconds = _levels(doc)
    return {name: (first, seconds.get(name)) for name, first in {**own, **replays}.items()}


def _levels(
    doc: dict[str, Any],
) -> tuple[dict[str, LevelFigures], dict[str, LevelFigures], dict[str, LevelFigures]]:
    """(the run's own levels, the baseline suite's first measurements, its second ones)."""
    from pytest_vllm_conformance.perf.latency import LevelFigures

    own = {m.name: m for m in _measurements(doc, False) if isinstance(m, LevelFigures)}
    suite = [m for m in _measurements(doc, True) if isinstance(m, LevelFigures)]
    replays = {m.name: m for m in suite if not m.second}
    return own, replays, {m.name: m for m in suite if m.second}


def outputs_of(doc: dict[str, Any]) -> dict[str, GreedyOutput]:
    """Every greedy output of the run by prompt name (the last recorded wins)."""
    from pytest_vllm_conformance.workload.determinism import GreedyOutput

    return {m.prompt: m for m in _measurements(doc) if isinstance(m, GreedyOutput)}


def outcomes_of(doc: dict[str, Any]) -> dict[str, str]:
    """Each test's outcome; a skip for a feature not supported is ``not supported: FEATURE``."""

    def outcome(t: dict[str, Any]) -> str:
        if t.get("outcome") == "skipped" and t.get("not_supported"):
            return f"{NOT_SUPPORTED}: {t['not_supported']}"
        return str(t.get("outcome"))

    return {
        str(t["nodeid"]): outcome(t)
        for t in doc.get("tests") or []
        if isinstance(t, dict) and "nodeid" in t
    }


# -- outputs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputRow:
    """One prompt's greedy answer, old against new."""

    prompt: str
    verdict: str  # same, changed, accepted, not compared
    detail: str = ""
    old: str = ""
    new: str = ""

    @property
    def regressed(self) -> bool:
        return self.verdict == "changed"


def first_divergence(old: GreedyOutput, new: GreedyOutput) -> str:
    """Where two greedy answers part: the text's character and the token id's position.

    A character position is given only when both texts are as the server sent them (they
    hash to their ``text_sha256``): a results file escapes and cuts long or odd text, and
    a position in the stored form is no position in the answer."""
    from pytest_vllm_conformance.workload.determinism import first_difference, text_hash

    parts = []
    if old.text_sha256 != new.text_sha256:
        altered = [
            side
            for side, o in (("the baseline's", old), ("this run's", new))
            if text_hash(o.text) != o.text_sha256
        ]
        if altered:
            parts.append(
                f"the texts differ (sha256 {old.text_sha256[:12]} vs {new.text_sha256[:12]}); "
                f"{' and '.join(altered)} text is stored escaped or cut, so no position: "
                f"old {old.text[:60]!r}, new {new.text[:60]!r} (as stored)"
            )
        else:
            at = first_difference(old.text, new.text)
            parts.append(
                f"text differs at character {at}, after {old.text[max(0, at - 30) : at]!r}: "
                f"old {old.text[at : at + 30]!r}, new {new.text[at : at + 30]!r}"
            )
    if old.token_ids is not None and new.token_ids is not None and old.token_ids != new.token_ids:
        k = first_difference(old.token_ids, new.token_ids)

        def pick(ids: tuple[int, ...]) -> str:
            return str(ids[k]) if k < len(ids) else "<end>"

        parts.append(
            f"token ids differ at position {k}: old {pick(old.token_ids)}, "
            f"new {pick(new.token_ids)}"
        )
    return "; ".join(parts)


def output_row(old: GreedyOutput, new: GreedyOutput, accept: Iterable[str] = ()) -> OutputRow:
    """Same answer, or where it changed (``accepted`` when ``outputs`` or ``outputs:NAME``
    is in ``accept``)."""
    if old.request_sha256 != new.request_sha256:
        return OutputRow(
            old.prompt,
            "not compared",
            f"the request differs (sha256 {old.request_sha256} vs {new.request_sha256}): "
            "another prompt text, max_tokens or engine",
        )
    detail = first_divergence(old, new)
    if not detail:
        return OutputRow(old.prompt, "same")
    accepted = {"outputs", f"outputs:{old.prompt}"} & set(accept)
    return OutputRow(old.prompt, "accepted" if accepted else "changed", detail, old.text, new.text)


# -- latency ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyRow:
    """One level's metric at one percentile, old against new, with the ratio's interval."""

    level: str
    key: str  # e.g. ttft_p95
    old_ms: float
    new_ms: float
    ratio: float
    low: float  # the ratio's 95% interval
    high: float
    n_old: int
    n_new: int
    tolerance: float
    verdict: str  # regression, improvement, same, accepted, not confirmed, not compared
    note: str = ""
    #: the second measurement of the level in the new run (:func:`confirmed_rows`): its ratio
    #: new/old and the ratio's 95% interval; NaN where the run made none
    again_ratio: float = math.nan
    again_low: float = math.nan
    again_high: float = math.nan

    @property
    def regressed(self) -> bool:
        return self.verdict == "regression"

    @property
    def measured_again(self) -> bool:
        return math.isfinite(self.again_ratio)

    def sentence(self) -> str:
        """E.g. ``concurrency 1 ttft_p50: 43.1 ms, was 12.0 ms (x3.59, 95% interval x3.2 to
        x3.9; tolerance +50%)``, then what a second measurement found, where made."""
        if self.verdict == "not compared":
            return f"{self.level} {self.key}: not compared ({self.note})"
        text = (
            f"{self.level} {self.key}: {self.new_ms:.4g} ms, was {self.old_ms:.4g} ms "
            f"(x{self.ratio:.3g}, {self.new_ms - self.old_ms:+.4g} ms; 95% interval "
            f"x{self.low:.3g} to x{self.high:.3g}; tolerance +{self.tolerance:.0%}, "
            f"{self.n_old} vs {self.n_new} requests)"
        )
        if not self.measured_again:
            return text
        again = (
            f"measured again later in the run: x{self.again_ratio:.3g} (95% interval "
            f"x{self.again_low:.3g} to x{self.again_high:.3g})"
        )
        if self.verdict == "not confirmed":
            return f"{text}; NOT CONFIRMED, {again}"
        return f"{text}; {again}"


def _quantile(values: list[float], q: float) -> float:
    from pytest_vllm_conformance.perf.stats import percentile

    return percentile(sorted(values), q)


def ratio_intervals(
    old: list[float],
    new: list[float],
    qs: tuple[int, ...],
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict[int, tuple[float, float]]:
    """Per percentile in ``qs``: the ``confidence`` interval of new's percentile over old's,
    from ``resamples`` seeded bootstrap resamples of each side (percentile method; NumPy's
    linear percentiles, as :mod:`perf.stats`). NumPy comes with matplotlib, a dependency;
    it is imported here only."""
    import numpy as np

    rng = np.random.default_rng(seed)
    fractions = np.asarray(qs, dtype=float) / 100

    def boot(values: list[float]) -> Any:
        x = np.asarray(values, dtype=float)
        out = np.empty((len(qs), resamples))
        chunk = max(1, 2_000_000 // len(x))  # bounded memory: ~16 MB of indices at a time
        for start in range(0, resamples, chunk):
            k = min(chunk, resamples - start)
            drawn = x[rng.integers(0, len(x), size=(k, len(x)))]
            out[:, start : start + k] = np.quantile(drawn, fractions, axis=1)
        return out

    a, b = boot(old), boot(new)
    ratios = b / np.maximum(a, 1e-9)
    tail = (1 - confidence) / 2
    bounds = np.quantile(ratios, [tail, 1 - tail], axis=1)
    return {q: (float(bounds[0][i]), float(bounds[1][i])) for i, q in enumerate(qs)}


def level_rows(
    old: LevelFigures,
    new: LevelFigures,
    tolerance: dict[str, float] | None = None,
    accept: Iterable[str] = (),
    places: bool = True,
) -> list[LatencyRow]:
    """Each tolerance key of the level judged: regression, improvement or the same.
    ``places`` False: a level measured at another place in its run is judged anyway (a
    second measurement, which can only withdraw a regression: :func:`confirmed_rows`)."""
    tolerance = dict(BASELINE_TOLERANCE_DEFAULTS if tolerance is None else tolerance)
    floor = tolerance.pop("abs_ms", 0.0)
    accepted = "latency" in set(accept)
    rows: list[LatencyRow] = []
    nan = math.nan
    if old.samples is None or new.samples is None:
        which = "the baseline" if old.samples is None else "the new run"
        return [
            LatencyRow(new.name, "*", nan, nan, nan, nan, nan, 0, 0, 0.0, "not compared",
                       f"{which} kept no raw samples (a results file older than issue 18)")
        ]  # fmt: skip
    unlike, workload_note = _workloads(old, new, places)
    if unlike:
        return [
            LatencyRow(new.name, "*", nan, nan, nan, nan, nan, old.samples.kept,
                       new.samples.kept, 0.0, "not compared", unlike)
        ]  # fmt: skip
    for metric in BASELINE_METRICS:
        keys = sorted(
            (k for k in tolerance if k.startswith(f"{metric}_p")),
            key=lambda k: int(k[len(metric) + 2 :]),
        )
        if not keys:
            continue
        a, b = old.samples.metric(metric), new.samples.metric(metric)
        if not a and not b:
            continue  # the level has no such figure (embeddings: no TTFT)
        n = min(len(a), len(b))
        judged = [k for k in keys if n >= min_requests(int(k[len(metric) + 2 :]))]
        qs = tuple(int(k[len(metric) + 2 :]) for k in judged)
        seed = zlib.crc32(f"{new.name}|{metric}".encode())
        intervals = ratio_intervals(a, b, qs, seed) if judged else {}
        for key in keys:
            q, tol = int(key[len(metric) + 2 :]), tolerance[key]
            if key not in judged:
                rows.append(
                    LatencyRow(new.name, key, nan, nan, nan, nan, nan, len(a), len(b), tol,
                               "not compared", f"too few requests: {n} on a side, "
                               f"{min_requests(q)} needed for a p{q} (docs/baseline.md)")
                )  # fmt: skip
                continue
            was, now = _quantile(a, q), _quantile(b, q)
            ratio = now / was if was > 0 else (math.inf if now > 0 else 1.0)
            low, high = intervals[q]
            if ratio > 1 + tol and now - was > floor and low > 1 + tol:
                verdict = "accepted" if accepted else "regression"
            elif ratio < 1 / (1 + tol) and was - now > floor and high < 1 / (1 + tol):
                verdict = "improvement"
            else:
                verdict = "same"
            note = "; ".join(
                [f"{side}: {lv.harness}" for side, lv in (("old", old), ("new", new)) if lv.harness]
                + ([workload_note] if workload_note else [])
            )
            rows.append(
                LatencyRow(new.name, key, was, now, ratio, low, high, len(a), len(b), tol,
                           verdict, note)
            )  # fmt: skip
    return rows


def _workloads(old: LevelFigures, new: LevelFigures, places: bool = True) -> tuple[str, str]:
    """(why the level is not compared, or ""; a note, or ""): levels of the same name are
    like only with the same max_tokens and prompt texts, measured at the same place in their
    runs (:mod:`perf.place`), where both runs recorded them."""
    a, b = old.workload, new.workload
    if a is None or b is None:
        which = "the baseline" if a is None else "the new run"
        return "", f"{which} did not record the level's max_tokens and prompts: compared by name"
    if a.max_tokens != b.max_tokens:
        return f"the requests differ: max_tokens {a.max_tokens} vs {b.max_tokens}", ""
    if a.prompts_sha256 != b.prompts_sha256:
        return (
            "the requests differ: another prompt set "
            f"(sha256 {a.prompts_sha256[:12]} vs {b.prompts_sha256[:12]})",
            "",
        )
    if not places:
        return "", ""
    if a.place and b.place and a.place != b.place:
        return (
            "measured at another place in its run (after other tests or levels), where the "
            "same server's figures differ by up to x1.3 (docs/baseline.md): run the same "
            "selection of tests as the baseline's run (under -n a place depends on scheduling)",
            "",
        )
    if not (a.place and b.place):
        which = "the baseline" if not a.place else "the new run"
        return "", f"{which} did not record the level's place in its run: compared by name"
    return "", ""


#: verdicts a second measurement within the tolerance withdraws (:func:`confirmed_rows`)
SLOWER = ("regression", "accepted")


def confirmed_rows(
    first: list[LatencyRow], again: list[LatencyRow] | None, floor: float = 0.0
) -> list[LatencyRow]:
    """A slower verdict stands unless a second measurement of the level, made later in the
    same run (the baseline suite measures a level again where its first measurement
    regressed, ``--vllm-baseline-confirm``), is within the tolerance (its ratio at most
    ``1 + tolerance``, or a slowdown of at most ``floor`` ms): then it is "not confirmed".
    On a shared host a few seconds of other work can slow a whole short level (concurrency
    50 lasts ~3 s here) by x1.7 (docs/baseline.md); the same passing slowdown twice is far
    rarer than once, and a slower server is slower both times. The second need not be
    significant on its own: it only has to show the slowdown again. Each row keeps the
    second ratio and interval; ``again`` None (no second measurement) keeps ``first``."""
    if again is None:
        return first
    by_key = {r.key: r for r in again}
    out = []
    for row in first:
        second = by_key.get(row.key)
        if row.verdict == "not compared" or second is None:
            out.append(row)
            continue
        if second.verdict == "not compared":
            out.append(_noted(row, f"the second measurement judged nothing ({second.note})"))
            continue
        verdict = row.verdict
        within = second.ratio <= 1 + row.tolerance or second.new_ms - second.old_ms <= floor
        if verdict in SLOWER and within:
            verdict = "not confirmed"
        out.append(
            dataclasses.replace(
                row,
                verdict=verdict,
                again_ratio=second.ratio,
                again_low=second.low,
                again_high=second.high,
            )
        )
    return out


def judged_level(
    old: LevelFigures,
    first: LevelFigures,
    again: LevelFigures | None,
    tolerance: dict[str, float] | None = None,
    accept: Iterable[str] = (),
) -> list[LatencyRow]:
    """The level's rows: ``first`` (the new run's measurement) judged against ``old``, each
    slower verdict then held against ``again``, the same level measured later in the run
    (judged whatever its place: it can only withdraw a verdict). A second measurement whose
    requests failed or whose harness could not keep up confirms nothing: the first decides,
    and the rows say why."""
    rows = level_rows(old, first, tolerance, accept)
    if again is None:
        return rows
    if unusable := _unusable(again):
        why = f"the second measurement is unusable ({unusable}): the first decides"
        return [_noted(r, why) if r.verdict in SLOWER else r for r in rows]
    floor = dict(BASELINE_TOLERANCE_DEFAULTS if tolerance is None else tolerance).get("abs_ms", 0)
    return confirmed_rows(rows, level_rows(old, again, tolerance, accept, places=False), floor)


def _unusable(level: LevelFigures) -> str:
    """Why a measurement's figures are not the server's, or ""."""
    if level.error_rate > 0:
        return f"{level.error_rate:.0%} of its requests failed"
    return level.harness


def _noted(row: LatencyRow, note: str) -> LatencyRow:
    return dataclasses.replace(row, note="; ".join(n for n in (row.note, note) if n))


# -- conformance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TestChange:
    """A test whose outcome moved between the runs: a regression (passed, now failed or
    errored), a capability lost (passed, now "not supported", or not run at all while other
    tests of its suite ran), or a fix (the reverse of a regression)."""

    nodeid: str
    old: str
    new: str

    @property
    def kind(self) -> str:
        if self.new in FAILED:
            return "regression"
        if self.new == MISSING or self.new.startswith(NOT_SUPPORTED):
            return "capability lost"
        return "fix"

    @property
    def regressed(self) -> bool:
        return self.kind != "fix"


def conformance(old: dict[str, Any], new: dict[str, Any]) -> list[TestChange]:
    """Tests that passed before and fail now (regressions), that passed before and now
    find their feature not supported or are gone (capabilities lost), and tests that
    failed before and pass now (fixes).

    A test is gone when the new run ran other tests of its suite but not it (a suite not
    selected at all is a smaller run, not a loss); the baseline suite's own tests are left
    out of that, since their parameters come from the baseline file."""
    was, now = outcomes_of(old), outcomes_of(new)
    ran = {str(t.get("suite")) for t in _tests(new)} - {"baseline"}
    suite_of = {str(t.get("nodeid")): str(t.get("suite")) for t in _tests(old)}
    out = []
    for nodeid in sorted(was):
        a, b = was[nodeid], now.get(nodeid)
        if b is None:
            if a == "passed" and suite_of.get(nodeid) in ran:
                out.append(TestChange(nodeid, a, MISSING))
        elif (a == "passed" and (b in FAILED or b.startswith(NOT_SUPPORTED))) or (
            a in FAILED and b == "passed"
        ):
            out.append(TestChange(nodeid, a, b))
    return out


def _tests(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in doc.get("tests") or [] if isinstance(t, dict)]


# -- the whole comparison -------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Everything that changed between two runs; :attr:`regressed` says whether any of it
    is a regression (accepted changes are not)."""

    old: Identity
    new: Identity
    outputs: tuple[OutputRow, ...] = ()
    latency: tuple[LatencyRow, ...] = ()
    tests: tuple[TestChange, ...] = ()
    tolerance: dict[str, float] = field(default_factory=dict)
    accept: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[str]:
        """One sentence per regression."""
        out = [
            f"greedy answer of {r.prompt!r} changed: {r.detail}"
            for r in self.outputs
            if r.regressed
        ]
        out += [f"latency regressed: {r.sentence()}" for r in self.latency if r.regressed]
        out += [
            f"test regressed: {t.nodeid} ({t.old} -> {t.new})"
            for t in self.tests
            if t.kind == "regression"
        ]
        out += [
            f"capability lost: {t.nodeid} ({t.old} -> {t.new})"
            for t in self.tests
            if t.kind == "capability lost"
        ]
        return out

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def levels_not_compared(self) -> list[str]:
        """Levels of both runs judged on no row (other requests, another place in the run,
        too few requests): a comparison that judged nothing there must say so."""
        judged: dict[str, bool] = {}
        for r in self.latency:
            judged[r.level] = judged.get(r.level, False) or r.verdict != "not compared"
        return [name for name, any_row in judged.items() if not any_row]

    @property
    def not_confirmed(self) -> list[str]:
        """One sentence per slowdown a second measurement did not repeat: shown, not failed."""
        return [r.sentence() for r in self.latency if r.verdict == "not confirmed"]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON (the results document's ``comparison``): non-finite numbers as null."""

        def plain(value: Any) -> Any:
            if isinstance(value, float):
                return value if math.isfinite(value) else None
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        out: dict[str, Any] = plain(dataclasses.asdict(self))
        for row, change in zip(out["tests"], self.tests, strict=True):
            row["kind"] = change.kind
        out["regressed"] = self.regressed
        out["regressions"] = self.regressions
        out["levels_not_compared"] = self.levels_not_compared
        out["not_confirmed"] = self.not_confirmed
        return out

    def table(self) -> str:
        """The comparison for people: outputs, latency rows, test changes, the verdict."""
        lines = [f"old: {self.old.describe()}", f"new: {self.new.describe()}", ""]
        changed = [r for r in self.outputs if r.verdict != "same"]
        lines.append(
            f"Outputs: {len(self.outputs)} greedy answers compared, "
            f"{sum(r.verdict in ('changed', 'accepted') for r in self.outputs)} changed"
        )
        for o in changed:
            lines.append(f"  {o.verdict.upper():<12} {o.prompt}: {o.detail}")
        tol = ", ".join(
            f"{k}={v:g}" if k == "abs_ms" else f"{k}=+{v:.0%}" for k, v in self.tolerance.items()
        )
        lines += [
            "",
            f"Latency (tolerance {tol}; a regression: the 95% bootstrap interval of new/old "
            "wholly above 1 + tolerance, unless a second measurement of the level is within "
            "the tolerance)",
        ]
        if self.latency:
            head = ("level", "metric", "old ms", "new ms", "ratio", "95% interval", "again",
                    "verdict")  # fmt: skip
            body = [
                (
                    r.level,
                    r.key,
                    _num(r.old_ms),
                    _num(r.new_ms),
                    f"x{r.ratio:.3g}" if math.isfinite(r.ratio) else "-",
                    f"x{r.low:.3g}..x{r.high:.3g}" if math.isfinite(r.low) else "-",
                    f"x{r.again_ratio:.3g}" if r.measured_again else "-",
                    r.verdict.upper() if r.verdict in ("regression", "accepted") else r.verdict,
                )
                for r in self.latency
            ]
            widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
            for row in (head, *body):
                lines.append(
                    "  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
                )
            notes = dict.fromkeys(f"  note: {r.level}: {r.note}" for r in self.latency if r.note)
            lines += list(notes)
            if unjudged := self.levels_not_compared:
                total = len(dict.fromkeys(r.level for r in self.latency))
                lines.append(
                    f"  {len(unjudged)} of {total} levels not compared (nothing judged there): "
                    + ", ".join(unjudged)
                )
        else:
            lines.append("  no load level measured in both runs")
        regressions = [t for t in self.tests if t.kind == "regression"]
        lost = [t for t in self.tests if t.kind == "capability lost"]
        fixes = [t for t in self.tests if t.kind == "fix"]
        lines += [
            "",
            f"Conformance: {len(regressions)} regressions, {len(lost)} capabilities lost, "
            f"{len(fixes)} fixes",
        ]
        lines += [f"  REGRESSION {t.nodeid} ({t.old} -> {t.new})" for t in regressions]
        lines += [f"  LOST       {t.nodeid} ({t.old} -> {t.new})" for t in lost]
        lines += [f"  fix        {t.nodeid} ({t.old} -> {t.new})" for t in fixes]
        lines += [f"note: {n}" for n in self.notes]
        n = len(self.regressions)
        lines += [
            "",
            f"verdict: {'REGRESSION' if n else 'no regression'}" + (f" ({n})" if n else ""),
        ]
        return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "-"


def compare(
    old: dict[str, Any],
    new: dict[str, Any],
    tolerance: dict[str, float] | None = None,
    accept: Iterable[str] = (),
) -> Comparison:
    """The comparison of two results documents (old: the baseline)."""
    tolerance = dict(BASELINE_TOLERANCE_DEFAULTS if tolerance is None else tolerance)
    accept = tuple(accept)
    notes = []
    a, b = outputs_of(old), outputs_of(new)
    outputs = tuple(output_row(a[p], b[p], accept) for p in a if p in b)
    if a and not outputs:
        notes.append(
            "no greedy output of the baseline was measured again "
            "(neither the determinism nor the baseline suite ran)"
        )
    la, lb = levels_of(old), measured_twice(new)
    if missing := [name for name in la if name not in lb]:
        notes.append(
            f"{len(missing)} load level(s) of the baseline not measured in this run, so not "
            f"compared: {', '.join(missing)}"
        )
    latency = tuple(
        row
        for name in la
        if name in lb
        for row in judged_level(la[name], *lb[name], tolerance, accept)
    )
    if once := sorted({r.level for r in latency if r.verdict in SLOWER and not r.measured_again}):
        notes.append(
            f"regressed on one measurement, with no second to confirm it: {', '.join(once)}. "
            "The new run measured these levels once (it ran without --vllm-baseline, with "
            "--vllm-baseline-confirm=off, or with other tolerances than this comparison's, so "
            "they did not regress there), or its second measurement judged nothing or was "
            "unusable (the row's note says). A second measurement withdraws a passing "
            "slowdown of the host (docs/baseline.md)"
        )
    return Comparison(
        Identity.of(old),
        Identity.of(new),
        outputs,
        latency,
        tuple(conformance(old, new)),
        tolerance,
        accept,
        tuple(notes),
    )
