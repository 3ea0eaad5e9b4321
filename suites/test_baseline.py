"""Compared with an earlier run (``--vllm-baseline=PATH``): the same answers, no slower.

Without ``--vllm-baseline`` every test here skips. With it:

- each determinism prompt the baseline recorded a greedy answer for is sent again, the same
  request the determinism suite sends, and its answer must equal the baseline's (text, and
  token ids where both runs have them); a prompt whose request changed (another text,
  max_tokens or engine) is not compared;
- each load level the baseline measured is judged per metric (TTFT, per-request ITL, E2E)
  and percentile: it must not be slower by more than its tolerance AND significantly
  (``report.compare``). The figures judged are this run's own, which its latency suite
  measured (these tests run after it). A level is judged only like with like: the same
  requests (max_tokens, prompts) at the same place in its run (``perf.place``: on a small box
  what ran before a level moves its figures by up to x1.3), and a percentile only with
  enough requests; a level judged on nothing skips, saying why. A level this process did not
  measure is measured again (the baseline's request count, warm-up, max_tokens, prompts;
  nothing else of the run sends requests meanwhile: the ``baseline`` marker is exclusive)
  only where that is the baseline's place, or the baseline recorded none (an older file);
  else it skips at once;
- a level whose measurement regressed is measured a second time, here, and the regression
  stands unless the second is within the tolerance (``--vllm-baseline-confirm``: auto;
  always, every level; off, never): on a shared host a few seconds of bad scheduling slow
  a whole short level, which a second measurement minutes later does not repeat, while a
  slower server is slower both times (docs/baseline.md has the measured rates); a second
  measurement with failed requests or a harness that could not keep up confirms nothing;
- tests that passed in the baseline and fail now are listed as regressions, those that
  passed and now find their feature not supported (or are gone from a file that ran) as
  capabilities lost, and the reverse of a regression as a fix, in the terminal summary, the
  results JSON and the HTML report.

``--vllm-baseline-accept`` names changes made on purpose; they are shown, not failed.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import baseline as judge
from pytest_vllm_conformance.checks.slo import Table, harness_sound
from pytest_vllm_conformance.client import Client
from pytest_vllm_conformance.config import Settings
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.perf.latency import LevelFigures
from pytest_vllm_conformance.perf.loadtest import LoadRunner
from pytest_vllm_conformance.perf.place import Measured, history
from pytest_vllm_conformance.report import compare, measurements
from pytest_vllm_conformance.report.compare import Identity
from pytest_vllm_conformance.target.discovery import Target
from pytest_vllm_conformance.workload import determinism as det
from pytest_vllm_conformance.workload import prompts

pytestmark = pytest.mark.baseline


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per prompt with a greedy answer in the baseline, one per load level."""
    from pytest_vllm_conformance.plugin import settings

    path = settings(metafunc.config).baseline
    doc = compare.load(path) if path is not None else None
    for name, found in (
        ("baseline_prompt", compare.outputs_of(doc) if doc else {}),
        ("baseline_level", compare.levels_of(doc) if doc else {}),
    ):
        if name in metafunc.fixturenames:
            if found:
                metafunc.parametrize(name, list(found), ids=[str(k) for k in found])
            else:  # the test skips: no baseline, or one without such measurements
                metafunc.parametrize(name, [None], ids=["none-recorded" if doc else "no-baseline"])


def _identities(vllm_baseline: dict[str, Any], vllm_identity: Identity) -> dict[str, Any]:
    return {"old_identity": Identity.of(vllm_baseline), "new_identity": vllm_identity}


def test_greedy_answer_equals_the_baseline(
    vllm_baseline: dict[str, Any],
    vllm_identity: Identity,
    vllm_client: Client,
    vllm_target: Target,
    vllm_settings: Settings,
    baseline_prompt: str | None,
    request: pytest.FixtureRequest,
) -> None:
    if baseline_prompt is None:
        pytest.skip("the baseline recorded no greedy output (its determinism suite did not run)")
    old = compare.outputs_of(vllm_baseline)[baseline_prompt]
    chosen = {p.name: p for p in prompts.load(vllm_settings.prompts)}
    if (prompt := chosen.get(baseline_prompt)) is None:
        pytest.skip(f"prompt {baseline_prompt!r} of the baseline is not in this run's prompt set")
    body = det.greedy_body(
        vllm_target.model, vllm_target.engine.name, prompt.text, prompt.max_tokens
    )
    if det.request_hash(body) != old.request_sha256:
        pytest.skip(
            f"the request for {baseline_prompt!r} differs from the baseline's (another prompt "
            "text, max_tokens or engine): not compared"
        )
    r = vllm_client.post("/v1/completions", body)
    checks.request_succeeded(r, checks.Status(title="A baseline greedy request failed"))
    new = det.GreedyOutput.of(prompt.name, body, [det.parse_completion(r, 0, r.timings.scheduled)])
    measurements.record(request, new)
    row = judge.same_output(
        new,
        judge.Outputs(
            old=old,
            accept=vllm_settings.baseline_accept,
            curl=r.curl,
            **_identities(vllm_baseline, vllm_identity),
        ),
    )
    if row.verdict == "accepted":
        request.node.add_report_section("call", "baseline", f"accepted change: {row.detail}")


def test_latency_has_not_regressed(
    vllm_baseline: dict[str, Any],
    vllm_identity: Identity,
    vllm_load: LoadRunner,
    vllm_settings: Settings,
    baseline_level: str | None,
    request: pytest.FixtureRequest,
) -> None:
    if baseline_level is None:
        pytest.skip("the baseline measured no load level (its latency suite did not run)")
    old = compare.levels_of(vllm_baseline)[baseline_level]
    runs = history(request.config)
    measured = runs.levels.get(baseline_level)
    perf = (vllm_baseline.get("options") or {}).get("perf") or {}
    if measured is None:  # this process did not measure it
        there = old.workload.place if old.workload is not None else ""
        if there and there != runs.place():
            pytest.skip(
                f"level {baseline_level!r} not compared: this run did not measure it where the "
                "baseline did (its latency suite not selected, or run by another xdist "
                "worker), and measured elsewhere in a run its figures are not like the "
                "baseline's (docs/baseline.md); run the baseline's command"
            )
        measured = _measure(vllm_load, baseline_level, perf, old)
    harness_sound(measured.level, Table())  # figures that are not the server's give no verdict
    tolerance, accept = vllm_settings.baseline_tolerance, vllm_settings.baseline_accept
    again, unconfirmed = None, "--vllm-baseline-confirm=off"
    if _measure_again(vllm_settings.baseline_confirm, old, measured.figures, tolerance, accept):
        vllm_load.last_figures, unconfirmed = None, "the row's note says why"
        try:
            _measure(vllm_load, baseline_level, perf, old, second=True)
        except CheckFailure as exc:  # recorded, then failed: confirms nothing (judged_level)
            unconfirmed = f"the second measurement is unusable: {exc.title}"
        again = vllm_load.last_figures
    rows = judge.latency_within_tolerance(
        measured.figures,
        judge.Latency(
            old=old,
            tolerance=tolerance,
            accept=accept,
            again=again,
            unconfirmed=unconfirmed,
            **_identities(vllm_baseline, vllm_identity),
        ),
    )
    shown = [r.sentence() + f": {r.verdict}" for r in rows]
    request.node.add_report_section("call", "baseline", "\n".join(shown))
    if all(r.verdict == "not compared" for r in rows):  # judged nothing: not a pass
        why = rows[0].note if rows else "the two levels share no metric"
        pytest.skip(f"level {baseline_level!r} not compared: {why}")


def _measure_again(
    when: str, old: LevelFigures, new: LevelFigures, tolerance: dict[str, float], accept: Any
) -> bool:
    """``--vllm-baseline-confirm``: always (every level judged on something), never (off), or
    (auto) where the first measurement regressed (not an accepted change: nothing to fail)."""
    if when == "off":
        return False
    rows = compare.level_rows(old, new, dict(tolerance), accept)
    if when == "always":
        return any(r.verdict != "not compared" for r in rows)
    return any(r.verdict == "regression" for r in rows)


def _measure(
    load: LoadRunner, name: str, perf: dict[str, Any], old: LevelFigures, second: bool = False
) -> Measured:
    """The level measured now with the baseline's settings and requests, recorded as this
    test's measurement: what it judges (``second`` False: the run did not measure the level
    itself) or the second measurement it confirms a regression with."""
    level = load.replay(name, perf, old.workload, second)
    if level is None or load.last_figures is None:
        pytest.skip(f"level {name!r} is of no shape this suite can measure again")
    return Measured(level, load.last_figures)
