"""The determinism suite: its power, its evidence, its options, and the modes the bite table
cannot reach alone (replicas need two servers, drift is only a warning by default)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.client.records import RequestRecord, Response, Timings
from pytest_vllm_conformance.failures import CheckFailure
from pytest_vllm_conformance.workload import determinism as det
from tests.fault_server import FaultServer

BURST = "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output"


def test_the_arithmetic_of_the_default_burst() -> None:
    assert det.miss_probability(100, 0.01) == pytest.approx(0.366, abs=1e-3)
    assert det.miss_probability(500, 0.01) == pytest.approx(0.00657, abs=1e-4)
    assert det.requests_for(0.99, 0.01) == 459  # why one prompt's 100 copies are not enough
    assert "0.66% (0.99^500)" in det.power_statement(500)


def test_the_default_burst_catches_1_in_100_in_at_least_99_of_100_runs() -> None:
    """The decision rule over 100 simulated default runs (5 prompts x 100 requests)."""
    caught = 0
    for run in range(100):
        rng = random.Random(run)
        found = False
        for _prompt in range(5):
            outcomes = [
                det.Outcome(i, ("a", "b") if rng.random() >= 0.01 else ("a", "c"), (), 0.0, 0.0)
                for i in range(100)
            ]
            found = found or det.compare(outcomes) is not None
        caught += found
    assert caught >= 99


def test_a_divergence_comes_with_its_evidence(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults, fault.divergence_rate = {"diverge_sometimes"}, 0.05
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"{BURST}[short]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*100 identical requests (10 in flight) gave different outputs*",
            "*distinct outputs in 100 answers: #1 x9*",
            "*first divergence at token 0: after ''*",
            "*majority: * (logprob *)",
            "*other: * (logprob *)",
            "*request *: sent at +* ms, * others in flight*",
            "*with 500 requests, a divergence hitting 1% of requests goes unseen with probability "
            "0.66% (0.99^500)*",
            "*reproduce: curl -sS *",
        ]
    )


def test_logprob_drift_is_a_warning_by_default(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults = {"logprob_drift"}
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"{BURST}[short]")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*LogprobDrift: logprobs drift across the burst: up to *"])


def test_replicas_that_differ_are_caught(
    pytester: pytest.Pytester, fault: FaultServer, second_fault: FaultServer
) -> None:
    other_replica = second_fault
    other_replica.faults = {"replica_differs"}
    node = "test_determinism.py::test_replicas_give_the_same_output"
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-url={other_replica.url}", node)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Replicas answer prompt 'short' differently*"])
    other_replica.faults = set()
    pytester.runpytest(
        f"--vllm-url={fault.url}", f"--vllm-url={other_replica.url}", node
    ).assert_outcomes(passed=1)


def test_streams_that_differ_are_caught(pytester: pytest.Pytester, fault: FaultServer) -> None:
    fault.faults = {"stream_text_differs"}
    node = "test_determinism.py::test_streaming_and_non_streaming_give_the_same_tokens"
    result = pytester.runpytest(f"--vllm-url={fault.url}", node)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Prompt 'short' streams a different output than it returns*",
            "*differs in: text (token ids and logprob tokens equal)*",
        ]
    )


# issue 14: determinism judges what the user receives
def _outcome(text: str, ids: tuple[int, ...] | None, tokens: tuple[str, ...]) -> det.Outcome:
    return det.Outcome(0, tokens, (-0.5,) * len(tokens), 0.0, 0.0, text=text, token_ids=ids)


@pytest.mark.parametrize(
    ("other", "parts", "position"),
    [
        (_outcome("a B", (1, 2), (" a", " b")), ["text"], "text character 2"),
        (_outcome("a b", (1, 9), (" a", " b")), ["token ids"], "token id 1"),
        (_outcome("a b", None, (" a", " b")), ["token ids"], "token id 0"),
        (_outcome("a b", (1, 2), (" a", " c")), ["logprob tokens"], "token 1"),
        (_outcome("a c", (1, 3), (" a", " c")), ["text", "token ids", "logprob tokens"], "token 1"),
    ],
)
def test_any_part_a_user_receives_can_diverge(
    other: det.Outcome, parts: list[str], position: str
) -> None:
    same = _outcome("a b", (1, 2), (" a", " b"))
    found = det.compare([same, same, other])
    assert found is not None and found.parts == parts and found.position == position
    assert f"differs in: {', '.join(parts)}" in found.describe()
    assert det.compare([same, _outcome("a b", (1, 2), (" a", " b"))]) is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"choices": "abc"}, "$.choices"),
        ({"choices": []}, "$.choices"),
        ({"choices": [{"text": 7}]}, "$.choices[0].text"),
        ({"choices": [{"text": "a", "token_ids": ["x"]}]}, "$.choices[0].token_ids"),
        ({"choices": [{"text": "a", "logprobs": {"tokens": [1]}}]}, "$.choices[0].logprobs.tokens"),
        (
            {"choices": [{"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": ["x"]}}]},
            "$.choices[0].logprobs.token_logprobs",
        ),
        ({"choices": [{"text": "a", "logprobs": 3}]}, "$.choices[0].logprobs"),
        (
            {
                "choices": [
                    {"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [float("nan")]}}
                ]
            },
            "$.choices[0].logprobs.token_logprobs",
        ),
        (
            {
                "choices": [
                    {"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [10**400]}}
                ]
            },
            "$.choices[0].logprobs.token_logprobs",
        ),
    ],
)
def test_a_malformed_answer_is_a_titled_failure(body: dict[str, Any], path: str) -> None:
    r = Response(
        RequestRecord("POST", "http://x/v1/completions"),
        200,
        {},
        json.dumps(body).encode(),
        Timings(),
    )
    with pytest.raises(CheckFailure) as info:
        det.parse_completion(r, 0, 0.0)
    assert info.value.title in (values.WRONG_SHAPE, values.NON_FINITE)  # the accessors'
    assert info.value.path.startswith(path), info.value.path


def test_a_text_divergence_names_the_text_and_where(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    """Logprob tokens and token ids agree; only the text a user reads differs."""
    fault.faults, fault.divergence_rate = {"text_differs"}, 0.05
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"{BURST}[short]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*100 identical requests (10 in flight) gave different outputs*",
            "*differs in: text (token ids and logprob tokens equal)*",
            "*first divergence in the text at character *: after '*",
            "*majority: '*",
            "*other:    '*",
        ]
    )


def test_a_token_id_divergence_names_the_ids_and_where(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    fault.faults, fault.divergence_rate = {"token_ids_differ"}, 0.05
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"{BURST}[short]")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*differs in: token ids (text and logprob tokens equal)*",
            "*first divergence in the token ids at position 0: majority *, other *",
        ]
    )


def test_streamed_token_ids_are_compared(pytester: pytest.Pytester, fault: FaultServer) -> None:
    """Every answer gets a random first token id: the stream's differ from the plain one's."""
    fault.faults, fault.divergence_rate = {"token_ids_differ"}, 1.0
    node = "test_determinism.py::test_streaming_and_non_streaming_give_the_same_tokens"
    result = pytester.runpytest(f"--vllm-url={fault.url}", node)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Prompt 'short' streams a different output than it returns*",
            "*differs in: token ids (text and logprob tokens equal)*",
        ]
    )


def test_a_prompt_file_replaces_the_built_in_set(
    pytester: pytest.Pytester, fault: FaultServer
) -> None:
    prompts = pytester.path / "prompts.jsonl"
    prompts.write_text(
        '{"name": "greeting", "prompt": "Hi there"}\n'
        '{"prompt": "Count to five:", "max_tokens": 12}\n'
    )
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        f"--vllm-prompts={prompts}",
        "--vllm-determinism-requests=5",
        BURST,
        "-v",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*[[]greeting] PASSED*", "*[[]line2] PASSED*"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "no prompt key"}\n', "line 1 of * is not *"),
        ("\n", "* holds no prompt."),
    ],
)
def test_a_bad_prompt_file_is_one_usage_error(
    pytester: pytest.Pytester, fault: FaultServer, content: str, message: str
) -> None:
    bad = Path(pytester.path / "bad.jsonl")
    bad.write_text(content)
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-prompts={bad}", BURST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --vllm-prompts: {message}"])


# issue 17: tools
def test_the_tool_burst_compares_names_and_arguments_not_ids() -> None:
    def outcome(rid: int, call_id: str, arguments: str) -> det.Outcome:
        body = {
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": arguments},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        }
        r = Response(
            RequestRecord("POST", "http://x/v1/chat/completions"),
            200,
            {},
            json.dumps(body).encode(),
            Timings(),
        )
        return det.parse_tool_calls(r, rid, 0.0)

    same = [outcome(0, "call_a", "{}"), outcome(1, "call_b", "{}")]
    assert det.compare(same) is None
    found = det.compare([*same, outcome(2, "call_c", '{"city":"rome"}')])
    assert found is not None
    assert "first divergence in the text" in found.describe()
    assert "logprob tokens equal" not in found.describe()  # none were given
