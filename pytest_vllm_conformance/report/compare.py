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
  (``benchmarks/baseline_false_alarms.py``, docs/baseline.md). An improvement is the mirror
  image (interval wholly below ``1 / (1 + tolerance)``); it is reported, never failed.
- **Conformance**: tests that passed in the old run and fail (or error) in the new one are
  regressions; the reverse are fixes.

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
    BASELINE_TOLERANCE_DEFAULTS,
)

if TYPE_CHECKING:
    from pytest_vllm_conformance.perf.latency import LevelFigures
    from pytest_vllm_conformance.workload.determinism import GreedyOutput

RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_SAMPLES = 5  # fewer on either side: the level is not compared
FAILED = ("failed", "error")


# -- the documents --------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> str:
    return Path(path).read_text(encoding="utf-8")


def load(path: Path) -> dict[str, Any]:
    """A results document from its file or a certification bundle folder (``results.json``);
    ValueError with one sentence when it is none."""
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = json.loads(_read(str(path), path.stat().st_mtime))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable results file ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith(
        "pytest-vllm-conformance/results/"
    ):
        raise ValueError(f"{path}: not a pytest-vllm-conformance results file")
    return doc


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


def _measurements(doc: dict[str, Any]) -> Iterable[Any]:
    from pytest_vllm_conformance.report.measurements import load as rebuild

    for test in doc.get("tests") or []:
        if isinstance(test, dict) and isinstance(test.get("measurements"), list):
            try:
                yield from rebuild(test["measurements"])
            except (KeyError, TypeError, ValueError):  # a malformed entry: that test's are lost
                continue


def levels_of(doc: dict[str, Any]) -> dict[str, LevelFigures]:
    """Every latency level of the run by name; a name measured twice (the latency suite,
    then the baseline suite's replay) keeps the last."""
    from pytest_vllm_conformance.perf.latency import LevelFigures

    return {m.name: m for m in _measurements(doc) if isinstance(m, LevelFigures)}


def outputs_of(doc: dict[str, Any]) -> dict[str, GreedyOutput]:
    """Every greedy output of the run by prompt name (the last recorded wins)."""
    from pytest_vllm_conformance.workload.determinism import GreedyOutput

    return {m.prompt: m for m in _measurements(doc) if isinstance(m, GreedyOutput)}


def outcomes_of(doc: dict[str, Any]) -> dict[str, str]:
    return {
        str(t["nodeid"]): str(t.get("outcome"))
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
    """Where two greedy answers part: the text's character and the token id's position."""
    from pytest_vllm_conformance.workload.determinism import first_difference

    parts = []
    if old.text_sha256 != new.text_sha256:
        at = first_difference(old.text, new.text)
        if old.text == new.text:
            parts.append(
                "the texts differ beyond what the results file keeps "
                f"(sha256 {old.text_sha256[:12]} vs {new.text_sha256[:12]})"
            )
        else:
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
    verdict: str  # regression, improvement, same, accepted, not compared
    note: str = ""

    @property
    def regressed(self) -> bool:
        return self.verdict == "regression"

    def sentence(self) -> str:
        """E.g. ``concurrency 1 ttft_p50: 43.1 ms, was 12.0 ms (x3.59, 95% interval x3.2 to
        x3.9; tolerance +10%)``."""
        if self.verdict == "not compared":
            return f"{self.level} {self.key}: not compared ({self.note})"
        return (
            f"{self.level} {self.key}: {self.new_ms:.4g} ms, was {self.old_ms:.4g} ms "
            f"(x{self.ratio:.3g}, {self.new_ms - self.old_ms:+.4g} ms; 95% interval "
            f"x{self.low:.3g} to x{self.high:.3g}; tolerance +{self.tolerance:.0%}, "
            f"{self.n_old} vs {self.n_new} requests)"
        )


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
) -> list[LatencyRow]:
    """Each tolerance key of the level judged: regression, improvement or the same."""
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
        if min(len(a), len(b)) < MIN_SAMPLES:
            rows += [
                LatencyRow(new.name, k, nan, nan, nan, nan, nan, len(a), len(b), tolerance[k],
                           "not compared", f"fewer than {MIN_SAMPLES} requests on a side")
                for k in keys
            ]  # fmt: skip
            continue
        qs = tuple(int(k[len(metric) + 2 :]) for k in keys)
        seed = zlib.crc32(f"{new.name}|{metric}".encode())
        intervals = ratio_intervals(a, b, qs, seed)
        for key, q in zip(keys, qs, strict=True):
            was, now = _quantile(a, q), _quantile(b, q)
            ratio = now / was if was > 0 else (math.inf if now > 0 else 1.0)
            low, high = intervals[q]
            tol = tolerance[key]
            if ratio > 1 + tol and now - was > floor and low > 1 + tol:
                verdict = "accepted" if accepted else "regression"
            elif ratio < 1 / (1 + tol) and was - now > floor and high < 1 / (1 + tol):
                verdict = "improvement"
            else:
                verdict = "same"
            note = "; ".join(
                f"{side}: {lv.harness}" for side, lv in (("old", old), ("new", new)) if lv.harness
            )
            rows.append(
                LatencyRow(new.name, key, was, now, ratio, low, high, len(a), len(b), tol,
                           verdict, note)
            )  # fmt: skip
    return rows


# -- conformance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TestChange:
    """A test whose outcome moved between the runs: a regression or a fix."""

    nodeid: str
    old: str
    new: str

    @property
    def kind(self) -> str:
        return "regression" if self.new in FAILED else "fix"


def conformance(old: dict[str, Any], new: dict[str, Any]) -> list[TestChange]:
    """Tests that passed before and fail now (regressions), and the reverse (fixes)."""
    was, now = outcomes_of(old), outcomes_of(new)
    out = []
    for nodeid in sorted(set(was) & set(now)):
        a, b = was[nodeid], now[nodeid]
        if (a == "passed" and b in FAILED) or (a in FAILED and b == "passed"):
            out.append(TestChange(nodeid, a, b))
    return out


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
        return out

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

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
        for row in out["tests"]:
            row["kind"] = "regression" if row["new"] in FAILED else "fix"
        out["regressed"] = self.regressed
        out["regressions"] = self.regressions
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
            "wholly above 1 + tolerance)",
        ]
        if self.latency:
            head = ("level", "metric", "old ms", "new ms", "ratio", "95% interval", "verdict")
            body = [
                (
                    r.level,
                    r.key,
                    _num(r.old_ms),
                    _num(r.new_ms),
                    f"x{r.ratio:.3g}" if math.isfinite(r.ratio) else "-",
                    f"x{r.low:.3g}..x{r.high:.3g}" if math.isfinite(r.low) else "-",
                    r.verdict.upper() if r.verdict in ("regression", "accepted") else r.verdict,
                )
                for r in self.latency
            ]
            widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
            for row in (head, *body):
                lines.append(
                    "  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
                )
            for r in self.latency:
                if r.note and r.verdict == "not compared":
                    lines.append(f"  note: {r.level}: {r.note}")
        else:
            lines.append("  no load level measured in both runs")
        regressions = [t for t in self.tests if t.kind == "regression"]
        fixes = [t for t in self.tests if t.kind == "fix"]
        lines += ["", f"Conformance: {len(regressions)} regressions, {len(fixes)} fixes"]
        lines += [f"  REGRESSION {t.nodeid} ({t.old} -> {t.new})" for t in regressions]
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
    la, lb = levels_of(old), levels_of(new)
    latency = tuple(
        row
        for name in la
        if name in lb
        for row in level_rows(la[name], lb[name], tolerance, accept)
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
