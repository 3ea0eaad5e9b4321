"""Every bundled check FAILS on the fault server switched to exactly its defect.

The clean fault server passes every suite in both profiles (a check that fails on
a conforming server is as broken as one that never fails); then each row of BITES
switches one defect on and runs the one bundled test that must catch it.
"""

from __future__ import annotations

import pytest

from tests.fault_server import MODEL, FaultServer
from tests.faults import FAULTS

EMBED = [f"--vllm-embedding-model={MODEL}"]
# Latency and memory sized for the fault server; the defaults are for real deployments.
QUICK = ["--vllm-latency-concurrency=1,8", "--vllm-latency-requests=16",
         "--vllm-latency-warmup=0", "--vllm-latency-max-tokens=16", "--vllm-latency-rate=40",
         "--vllm-memory-duration=5s", "--vllm-memory-max-growth=1000"]
LATENCY_C1 = "test_latency.py::test_streamed_completions_at_each_concurrency_level[c1]"
FEW = ["--vllm-latency-requests=3", "--vllm-latency-warmup=0", "--vllm-latency-max-tokens=8"]
# fault -> (bundled test that must fail, title it must show, extra options)
BITES: dict[str, tuple[str, str, list[str]]] = {
    "extra_field": ("test_compliance.py::test_completions_match_the_schema[prompt-string]",
                    "Field not defined by the OpenAI API", ["--vllm-profile=openai"]),
    "wrong_object": ("test_compliance.py::test_chat_completions_match_the_schema[user-turn]",
                     "Response does not match the OpenAI schema", []),
    "created_string": ("test_compliance.py::test_the_openai_sdk_accepts_the_answers[chat]",
                       "The OpenAI SDK rejects the answer", []),
    "finish_reason_null": ("test_compliance.py::test_completions_match_the_schema[echo]",
                           "Finished choice has no finish_reason", []),
    "missing_usage": ("test_compliance.py::test_completions_match_the_schema[prompt-list]",
                      "Response has no usage", []),
    "usage_mismatch": ("test_compliance.py::test_chat_completions_match_the_schema[n-2]",
                       "Usage does not add up", []),
    "max_tokens_ignored": ("test_compliance.py::test_max_tokens_is_respected[chat]",
                           "max_tokens not respected", []),
    "stop_ignored": ("test_compliance.py::test_a_stop_sequence_ends_the_text_and_is_not_"
                     "included[/v1/completions]", "Stop sequence left in the text", []),
    "stop_included": ("test_compliance.py::test_a_stop_sequence_ends_the_text_and_is_not_"
                      "included[/v1/chat/completions]", "Stop sequence left in the text", []),
    "n_ignored": ("test_compliance.py::test_n_gives_n_indexed_choices[/v1/completions]",
                  "n choices not returned with indices 0..n-1", []),
    "bad_indices": ("test_compliance.py::test_n_gives_n_indexed_choices[/v1/chat/completions]",
                    "n choices not returned with indices 0..n-1", []),
    "echo_ignored": ("test_compliance.py::test_echo_returns_the_prompt",
                     "echo does not return the prompt", []),
    "logprobs_count_wrong": ("test_compliance.py::test_logprobs_come_in_the_requested_number"
                             "[/v1/chat/completions]", "Wrong number of top logprobs", []),
    "logprob_positive": ("test_compliance.py::test_logprobs_come_in_the_requested_number"
                         "[/v1/completions]", "Log-probability above 0", []),
    "stream_text_differs": ("test_compliance.py::test_streamed_text_equals_non_streamed_text"
                            "[/v1/completions]",
                            "Streamed text differs from the non-streamed text", []),
    # issue 14: every server value validated before use
    "choices_string": ("test_compliance.py::test_max_tokens_is_respected[completions]",
                       "Response body has the wrong shape", []),
    "usage_list": ("test_compliance.py::test_max_tokens_is_respected[chat]",
                   "Response body has the wrong shape", []),
    "metrics_nan": ("test_memory.py::test_server_memory_is_stable_under_sustained_load",
                    "Non-finite number from the server", QUICK),
    "invalid_accepted": ("test_errors.py::test_an_invalid_request_is_rejected"
                         "[negative-max-tokens]", "Invalid request accepted", []),
    "unknown_model_200": ("test_errors.py::test_an_invalid_request_is_rejected[unknown-model]",
                          "Invalid request accepted", []),
    "error_500_on_invalid": ("test_errors.py::test_an_invalid_request_is_rejected[zero-n]",
                             "Server error on invalid input", []),
    "error_shape": ("test_errors.py::test_an_invalid_request_is_rejected[missing-messages]",
                    "Error body is not OpenAI's error object", []),
    "no_auth": ("test_errors.py::test_the_api_key_is_enforced[wrong-key]",
                "Invalid request accepted", ["--vllm-api-key=sk-the-key"]),
    "stream_no_done": ("test_streaming.py::test_stream_ends_with_done[chat]",
                       "Stream does not end with [[]DONE]", []),
    "stream_non_json": ("test_streaming.py::test_every_event_is_one_json_chunk[completions]",
                        "Streamed data line is not JSON", []),
    "stream_bad_frame": ("test_streaming.py::test_every_event_is_one_json_chunk[chat]",
                         "Malformed SSE framing", []),
    "stream_wrong_type": ("test_streaming.py::test_content_type_is_event_stream[chat-usage]",
                          "Stream is not text/event-stream", []),
    "stream_id_changes": ("test_streaming.py::test_one_id_across_the_stream[completions]",
                          "Stream chunks carry different ids", []),
    "stream_no_role": ("test_streaming.py::test_first_chat_chunk_carries_the_role[chat]",
                       "First chat chunk carries no role", []),
    "stream_finish_early": ("test_streaming.py::test_finish_reason_only_on_the_last_chunk"
                            "[chat-n-2]", "finish_reason not only on the last chunk", []),
    "stream_usage_with_choices": ("test_streaming.py::test_usage_chunk_is_last_with_empty_"
                                  "choices[completions-usage]", "Usage chunk has choices", []),
    "embed_order": ("test_embeddings.py::test_a_batch_keeps_order_and_index",
                    "Batched embedding of * differs", EMBED),
    "embed_dims": ("test_embeddings.py::test_a_batch_keeps_order_and_index",
                   "Embeddings differ in dimension", EMBED),
    "embed_base64_differs": ("test_embeddings.py::test_base64_decodes_to_the_float_vector",
                             "The base64 embedding differs", EMBED),
    "embed_no_usage": ("test_embeddings.py::test_a_single_input_gives_one_valid_vector",
                       "Embedding usage missing", EMBED),
    "embed_bad_input_200": ("test_embeddings.py::test_bad_input_is_rejected[a-number]",
                            "Invalid request accepted", EMBED),
    "metrics_missing": ("test_metrics.py::test_metrics_parse_as_prometheus_text",
                        "Server exposes no /metrics", []),
    "metrics_unparseable": ("test_metrics.py::test_metrics_parse_as_prometheus_text",
                            "/metrics is not valid Prometheus text", []),
    "metrics_names_missing": ("test_metrics.py::test_the_engine_metrics_are_exposed",
                              "vllm metrics missing", []),
    "metrics_counter_decreases": ("test_metrics.py::test_counters_only_grow_across_a_request",
                                  "A counter went down", []),
    "metrics_histogram_stuck": ("test_metrics.py::test_the_latency_histogram_counts_each_"
                                "request", "vllm:e2e_request_latency_seconds_count did not "
                                "count the requests", []),
    "metrics_ttft_off": ("test_metrics.py::test_server_ttft_agrees_with_the_client",
                         "Server TTFT disagrees with the client's", []),
    "diverge_sometimes": ("test_determinism.py::test_a_burst_of_identical_requests_gives_one_"
                          "output[short]", "100 identical requests (10 in flight) gave "
                          "different outputs", []),
    "logprob_drift": ("test_determinism.py::test_a_burst_of_identical_requests_gives_one_"
                      "output[short]", "Logprobs differ across the burst",
                      ["--vllm-profile=batch-invariant"]),
    "batch_differs": ("test_determinism.py::test_alone_batched_and_among_others_give_the_same_"
                      "output", "Prompt 'short' answers differently in a batched request", []),
    "cache_differs": ("test_determinism.py::test_prefix_cache_cold_and_warm_give_the_same_"
                      "output", "The answer changes once the prefix is cached", []),
    "seed_ignored": ("test_determinism.py::test_seeded_sampling_reproduces",
                     "The same seed gives different samples", []),
    # issue 14: determinism judges what the user receives
    "text_differs": ("test_determinism.py::test_a_burst_of_identical_requests_gives_one_"
                     "output[short]", "100 identical requests (10 in flight) gave "
                     "different outputs", []),
    "seeded_text_differs": ("test_determinism.py::test_seeded_sampling_reproduces",
                            "The same seed gives different samples", []),
    "token_ids_differ": ("test_determinism.py::test_a_burst_of_identical_requests_gives_one_"
                         "output[short]", "100 identical requests (10 in flight) gave "
                         "different outputs", []),
    "logprobs_misspell": ("test_compliance.py::test_logprob_tokens_spell_the_text"
                          "[/v1/completions]", "Logprob tokens do not spell the text", []),
    "cancel_leak": ("test_cancellation.py::test_dropped_streams_are_freed",
                    "Dropped streams keep running", []),
    # issue 14: idle means zero
    "running_stuck": ("test_cancellation.py::test_dropped_streams_are_freed",
                      "The running gauge is not 0 when idle", []),
    "slow_first_token": (LATENCY_C1, "Latency SLO missed", ["--vllm-slo=ttft_p95_ms=500", *FEW]),
    "slow_tokens": (LATENCY_C1, "Latency SLO missed", ["--vllm-slo=tpot_p95_ms=20", *FEW]),
    "errors_under_load": ("test_latency.py::test_streamed_completions_at_each_concurrency_level"
                          "[c8]", "Requests failed under load", QUICK),
    "embed_slow": ("test_latency.py::test_embeddings_latency_and_rate[single]",
                   "Latency SLO missed", [*EMBED, *FEW]),
    "memory_grows": ("test_memory.py::test_server_memory_is_stable_under_sustained_load",
                     "Server memory grows under load", QUICK),
    # issue 15: the harness checks itself
    "server_histogram_slow": (LATENCY_C1, "Latency figures impossible against the server's own "
                              "histograms", FEW),
}
# More checks proven by a fault that already has a row above, or by one of its own.
MORE_BITES: list[tuple[str, str, str, list[str]]] = [
    ("health_missing", "test_health.py::test_health_endpoint_answers_200",
     "/health is not 200 on a ready server", []),
    ("models_500", "test_health.py::test_models_lists_the_model_under_test",
     "GET /v1/models failed", [f"--vllm-model={MODEL}"]),
    ("extra_field", "test_compliance.py::test_models_match_the_schema",
     "Field not defined by the OpenAI API", ["--vllm-profile=openai"]),
    ("logprobs_count_wrong", "test_compliance.py::test_logprobs_come_in_the_requested_number"
     "[/v1/completions]", "Wrong number of top logprobs", []),
    ("usage_mismatch", "test_generated.py::test_generated_valid_requests_succeed",
     "Usage does not add up", []),
    ("error_shape", "test_generated.py::test_generated_wrong_types_are_rejected",
     "Error body is not OpenAI's error object", []),
    ("embed_no_token_ids", "test_embeddings.py::test_token_ids_are_accepted",
     "POST /v1/embeddings failed", EMBED),
    ("metrics_busy_500", "test_metrics.py::test_metrics_scrape_under_load_does_not_fail",
     "A request failed while /metrics was scraped", []),
    ("slow_first_token", "test_latency.py::test_streamed_completions_at_an_open_loop_arrival_rate",
     "Latency SLO missed", ["--vllm-slo=ttft_p95_ms=500", "--vllm-latency-rate=10", *FEW]),
    ("embed_slow", "test_latency.py::test_embeddings_latency_and_rate[batch-16]",
     "Latency SLO missed", [*EMBED, *FEW]),
    ("stream_no_done", "test_memory.py::test_server_memory_is_stable_under_sustained_load",
     "Requests failed under load", QUICK),
    # issue 14: determinism judges what the user receives
    ("logprobs_misspell", "test_compliance.py::test_logprob_tokens_spell_the_text"
     "[/v1/chat/completions]", "Logprob tokens do not spell the text", []),
    # issue 14: every server value validated before use
    ("metrics_unparseable", "test_memory.py::test_server_memory_is_stable_under_sustained_load",
     "/metrics is not valid Prometheus text", QUICK),
    ("metrics_nan", "test_metrics.py::test_server_ttft_agrees_with_the_client",
     "Non-finite number from the server", []),
]
ROWS = [(f, *row) for f, row in BITES.items()] + MORE_BITES
# Covered by tests/test_health_suite.py and tests/test_readiness.py.
ELSEWHERE = {"health_503", "models_401", "completions_500", "hang", "huge_body", "echo_key",
             "stream_stalls", "replica_differs",  # tests/test_determinism_suite.py
             "html_injection"}  # tests/test_html_report.py
# issue 14: load runs fit the server
ELSEWHERE |= {"embeddings_not_served"}  # tests/test_locust_fit.py
# issue 14: bounded requests and SSE as the spec defines it (tests/test_hostile_transport.py)
ELSEWHERE |= {"trickle", "huge_announced_body", "many_headers", "http_101", "sse_cr_only",
              "sse_other_fields"}
# issue 14: secrets and untrusted text (tests/test_untrusted_text.py)
ELSEWHERE |= {"echo_key_everywhere", "model_id_escapes", "model_id_surrogate", "models_10000"}
# issue 14: every server value validated before use (tests/test_hostile_values.py)
ELSEWHERE |= {"models_data_not_list", "deep_json"}


def test_every_fault_has_a_check() -> None:
    assert set(FAULTS) == {row[0] for row in ROWS} | ELSEWHERE


@pytest.mark.parametrize("profile", ["openai", "vllm"])
def test_the_clean_fault_server_passes_every_suite(pytester: pytest.Pytester,
                                                   fault: FaultServer, profile: str) -> None:
    fault.api_key = "sk-the-key"
    result = pytester.runpytest(f"--vllm-url={fault.url}", f"--vllm-profile={profile}",
                                "--vllm-api-key=sk-the-key", *EMBED, "-rfEs", "-p", "no:randomly",
                                "--vllm-determinism-requests=20", *QUICK)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, result.stdout.str()
    assert "Harness could not read the answer" not in result.stdout.str()  # no harness bug
    skipped = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    allowed = ("the vllm profile allows this", "one --vllm-url given",
               "needs the two-instance service started by the plugin")
    assert all(any(a in line for a in allowed) for line in skipped), skipped


@pytest.mark.parametrize(("fault_name", "node", "title", "extra"), ROWS,
                         ids=[f"{r[0]}:{r[1].split('::')[1]}" for r in ROWS])
def test_the_check_fails_on_its_defect(pytester: pytest.Pytester, fault: FaultServer,
                                       fault_name: str, node: str, title: str,
                                       extra: list[str]) -> None:
    fault.faults = {fault_name}
    if fault_name == "no_auth":
        fault.api_key = "sk-the-key"
    result = pytester.runpytest(f"--vllm-url={fault.url}", node, *extra, "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{title}*"])
    assert "Traceback" not in result.stdout.str()
