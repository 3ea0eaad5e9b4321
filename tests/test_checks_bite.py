"""Every bundled check FAILS on the fault server switched to exactly its defect.

The clean fault server passes every suite in both profiles (a check that fails on
a conforming server is as broken as one that never fails); then each row of BITES
switches one defect on and runs the one bundled test that must catch it. A row names
the registered check that gives the verdict (and the checks it is reached through), so
the registry and this table are one: every registered check has a row, or a reason in
UNPROVEN, and ``docs/checks.md`` is rendered from both (``python -m tests.test_checks_bite
> docs/checks.md``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import (
    answers,
    cancellation,
    determinism,
    embeddings,
    errors,
    harness,
    health,
    logprobs,
    memory,
    metrics,
    responses,
    schema,
    sdk,
    semantics,
    slo,
    streaming,
    structured,
    tools,
    topology,
    values,
)
from pytest_vllm_conformance.checks.registry import Check, Verdict, all_checks, render_markdown
from tests.fault_server import MODEL, FaultServer
from tests.faults import FAULTS

EMBED = [f"--vllm-embedding-model={MODEL}"]
# Latency and memory sized for the fault server; the defaults are for real deployments.
QUICK = [
    "--vllm-latency-concurrency=1,8",
    "--vllm-latency-requests=16",
    "--vllm-latency-warmup=0",
    "--vllm-latency-max-tokens=16",
    "--vllm-latency-rate=40",
    "--vllm-memory-duration=5s",
    "--vllm-memory-max-growth=1000",
]
LATENCY_C1 = "test_latency.py::test_streamed_completions_at_each_concurrency_level[c1]"
FEW = ["--vllm-latency-requests=3", "--vllm-latency-warmup=0", "--vllm-latency-max-tokens=8"]
AnyCheck = Check[Any, Any, Any]


class Bite(NamedTuple):
    """A fault, the bundled test that must fail on it, the registered check whose verdict it
    shows (reached through ``via``: the checks the test calls on the way) and extra options."""

    fault: str
    node: str
    check: AnyCheck
    verdict: Verdict
    extra: Sequence[str] = ()
    via: tuple[AnyCheck, ...] = ()


COMPLETIONS_SCHEMA = "test_compliance.py::test_completions_match_the_schema"
CHAT_SCHEMA = "test_compliance.py::test_chat_completions_match_the_schema"
STOP = "test_compliance.py::test_a_stop_sequence_ends_the_text_and_is_not_included"
LOGPROB_COUNT = "test_compliance.py::test_logprobs_come_in_the_requested_number"
INVALID = "test_errors.py::test_an_invalid_request_is_rejected"
MEMORY = "test_memory.py::test_server_memory_is_stable_under_sustained_load"
BURST = "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output[short]"
SPELL = "test_compliance.py::test_logprob_tokens_spell_the_text"
RESPONSES = "test_responses.py::"  # issue 17: responses
CONFORMS = (answers.answer_conforms,)
BURST_DIFFERS = determinism.BURST.titled(n=100, c=10)
SLO_MISSED, LOAD_FAILED = slo.SLO_MISSED, slo.LOAD_FAILED


# issue 17: structured outputs
STRUCTURED_SCHEMA = "test_structured_outputs.py::test_json_schema_answer_parses_and_validates"
STRUCTURED_OBJECT = "test_structured_outputs.py::test_json_object_answer_is_a_json_object"


def failed(title: str) -> Verdict:
    """The verdict of a request the suite names (``checks.request_succeeded``)."""
    return checks.REQUEST_FAILED.titled(title=title)


ROWS: list[Bite] = [
    Bite(
        "extra_field",
        f"{COMPLETIONS_SCHEMA}[prompt-string]",
        schema.matches,
        schema.EXTRA_FIELD,
        ["--vllm-profile=openai"],
        CONFORMS,
    ),
    Bite(
        "wrong_object", f"{CHAT_SCHEMA}[user-turn]", schema.matches, schema.VIOLATION, [], CONFORMS
    ),
    Bite(
        "created_string",
        "test_compliance.py::test_the_openai_sdk_accepts_the_answers[chat]",
        sdk.sdk_accepts,
        sdk.REJECTED,
    ),
    Bite(
        "finish_reason_null",
        f"{COMPLETIONS_SCHEMA}[echo]",
        semantics.finish_reasons_set,
        semantics.NO_FINISH_REASON,
        [],
        CONFORMS,
    ),
    Bite(
        "missing_usage",
        f"{COMPLETIONS_SCHEMA}[prompt-list]",
        semantics.usage_adds_up,
        semantics.NO_USAGE,
        [],
        CONFORMS,
    ),
    Bite(
        "usage_mismatch",
        f"{CHAT_SCHEMA}[n-2]",
        semantics.usage_adds_up,
        semantics.USAGE_SUM,
        [],
        CONFORMS,
    ),
    Bite(
        "max_tokens_ignored",
        "test_compliance.py::test_max_tokens_is_respected[chat]",
        semantics.max_tokens_respected,
        semantics.MAX_TOKENS,
    ),
    Bite("stop_ignored", f"{STOP}[/v1/completions]", semantics.stop_applied, semantics.STOP_LEFT),
    Bite(
        "stop_included",
        f"{STOP}[/v1/chat/completions]",
        semantics.stop_applied,
        semantics.STOP_LEFT,
    ),
    Bite(
        "n_ignored",
        "test_compliance.py::test_n_gives_n_indexed_choices[/v1/completions]",
        semantics.n_choices_indexed,
        semantics.N_CHOICES,
    ),
    Bite(
        "bad_indices",
        "test_compliance.py::test_n_gives_n_indexed_choices[/v1/chat/completions]",
        semantics.n_choices_indexed,
        semantics.N_CHOICES,
    ),
    Bite(
        "echo_ignored",
        "test_compliance.py::test_echo_returns_the_prompt",
        semantics.echo_returns_prompt,
        semantics.NO_ECHO,
    ),
    Bite(
        "logprobs_count_wrong",
        f"{LOGPROB_COUNT}[/v1/chat/completions]",
        semantics.chat_logprobs_count,
        semantics.TOP_COUNT,
    ),
    Bite(
        "logprob_positive",
        f"{LOGPROB_COUNT}[/v1/completions]",
        semantics.log_probability,
        semantics.POSITIVE_LOGPROB,
        [],
        (semantics.completion_logprobs_count,),
    ),
    Bite(
        "stream_text_differs",
        "test_compliance.py::test_streamed_text_equals_non_streamed_text[/v1/completions]",
        semantics.same_text,
        semantics.STREAM_TEXT,
    ),
    # issue 14: every server value validated before use
    Bite(
        "choices_string",
        "test_compliance.py::test_max_tokens_is_respected[completions]",
        values.of_kind,
        values.SHAPE,
        [],
        (semantics.max_tokens_respected,),
    ),
    Bite(
        "usage_list",
        "test_compliance.py::test_max_tokens_is_respected[chat]",
        values.of_kind,
        values.SHAPE,
        [],
        (semantics.max_tokens_respected,),
    ),
    Bite(
        "metrics_nan", MEMORY, values.finite_number, values.INFINITE, QUICK, (metrics.sample_total,)
    ),
    Bite("invalid_accepted", f"{INVALID}[negative-max-tokens]", errors.rejected, errors.ACCEPTED),
    Bite("unknown_model_200", f"{INVALID}[unknown-model]", errors.rejected, errors.ACCEPTED),
    Bite("error_500_on_invalid", f"{INVALID}[zero-n]", errors.rejected, errors.SERVER_ERROR),
    Bite("error_shape", f"{INVALID}[missing-messages]", errors.error_body, errors.NOT_ERROR_OBJECT),
    Bite(
        "no_auth",
        "test_errors.py::test_the_api_key_is_enforced[wrong-key]",
        errors.rejected,
        errors.ACCEPTED,
        ["--vllm-api-key=sk-the-key"],
    ),
    Bite(
        "stream_no_done",
        "test_streaming.py::test_stream_ends_with_done[chat]",
        streaming.ends_with_done,
        streaming.NO_DONE,
    ),
    Bite(
        "stream_non_json",
        "test_streaming.py::test_every_event_is_one_json_chunk[completions]",
        streaming.data_lines_are_json,
        streaming.NOT_JSON,
    ),
    Bite(
        "stream_bad_frame",
        "test_streaming.py::test_every_event_is_one_json_chunk[chat]",
        streaming.framing_is_clean,
        streaming.BAD_FRAMING,
    ),
    Bite(
        "stream_wrong_type",
        "test_streaming.py::test_content_type_is_event_stream[chat-usage]",
        streaming.content_type_is_event_stream,
        streaming.NOT_EVENT_STREAM,
    ),
    Bite(
        "stream_id_changes",
        "test_streaming.py::test_one_id_across_the_stream[completions]",
        streaming.one_id,
        streaming.IDS_DIFFER,
    ),
    Bite(
        "stream_no_role",
        "test_streaming.py::test_first_chat_chunk_carries_the_role[chat]",
        streaming.first_chat_chunk_has_role,
        streaming.NO_ROLE,
    ),
    Bite(
        "stream_finish_early",
        "test_streaming.py::test_finish_reason_only_on_the_last_chunk[chat-n-2]",
        streaming.finish_reason_only_on_last,
        streaming.FINISH_EARLY,
    ),
    Bite(
        "stream_usage_with_choices",
        "test_streaming.py::test_usage_chunk_is_last_with_empty_choices[completions-usage]",
        streaming.usage_chunk_shape,
        streaming.USAGE_WITH_CHOICES,
    ),
    Bite(
        "embed_order",
        "test_embeddings.py::test_a_batch_keeps_order_and_index",
        embeddings.same_vector,
        embeddings.DIFFERS.titled(what="Batched embedding of *"),
        EMBED,
    ),
    # issue 16: every embedding check bites on its own defect
    Bite(
        "embed_count_short",
        "test_embeddings.py::test_a_batch_keeps_order_and_index",
        embeddings.vectors,
        embeddings.COUNT,
        EMBED,
    ),
    Bite(
        "embed_index_reversed",
        "test_embeddings.py::test_a_batch_keeps_order_and_index",
        embeddings.vectors,
        embeddings.ORDER,
        EMBED,
    ),
    Bite(
        "embed_not_base64",
        "test_embeddings.py::test_base64_decodes_to_the_float_vector",
        embeddings.decode,
        embeddings.NOT_BASE64,
        EMBED,
    ),
    Bite(
        "embed_overflow",
        "test_embeddings.py::test_a_single_input_gives_one_valid_vector",
        embeddings.finite_vector,
        values.INFINITE,
        EMBED,
    ),
    Bite(
        "embed_dims",
        "test_embeddings.py::test_a_batch_keeps_order_and_index",
        embeddings.one_dimension,
        embeddings.DIMENSIONS,
        EMBED,
    ),
    Bite(
        "embed_base64_differs",
        "test_embeddings.py::test_base64_decodes_to_the_float_vector",
        embeddings.same_vector,
        embeddings.DIFFERS.titled(what="The base64 embedding"),
        EMBED,
    ),
    Bite(
        "embed_no_usage",
        "test_embeddings.py::test_a_single_input_gives_one_valid_vector",
        embeddings.usage_counted,
        embeddings.NO_USAGE,
        EMBED,
    ),
    Bite(
        "embed_bad_input_200",
        "test_embeddings.py::test_bad_input_is_rejected[a-number]",
        errors.rejected,
        errors.ACCEPTED,
        EMBED,
    ),
    Bite(
        "metrics_missing",
        "test_metrics.py::test_metrics_parse_as_prometheus_text",
        metrics.parse,
        metrics.NO_METRICS,
    ),
    Bite(
        "metrics_unparseable",
        "test_metrics.py::test_metrics_parse_as_prometheus_text",
        metrics.prometheus_text,
        metrics.UNPARSEABLE,
        [],
        (metrics.parse,),
    ),
    Bite(
        "metrics_names_missing",
        "test_metrics.py::test_the_engine_metrics_are_exposed",
        metrics.names_present,
        metrics.NAMES_MISSING.titled(engine="vllm"),
    ),
    Bite(
        "metrics_counter_decreases",
        "test_metrics.py::test_counters_only_grow_across_a_request",
        metrics.counters_only_grow,
        metrics.COUNTER_DOWN,
    ),
    Bite(
        "metrics_histogram_stuck",
        "test_metrics.py::test_the_latency_histogram_counts_each_request",
        metrics.grew_by,
        metrics.NOT_COUNTED.titled(sample="vllm:e2e_request_latency_seconds_count"),
    ),
    Bite(
        "metrics_ttft_off",
        "test_metrics.py::test_server_ttft_agrees_with_the_client",
        metrics.same_order_of_magnitude,
        metrics.DISAGREES.titled(what="TTFT"),
    ),
    Bite("diverge_sometimes", BURST, determinism.one_output, BURST_DIFFERS),
    Bite(
        "logprob_drift",
        BURST,
        determinism.logprobs_agree,
        determinism.LOGPROBS.titled(what="across the burst"),
        ["--vllm-profile=batch-invariant"],
    ),
    Bite(
        "batch_differs",
        "test_determinism.py::test_alone_batched_and_among_others_give_the_same_output",
        determinism.one_output,
        determinism.BATCHED.titled(prompt="'short'", how="in a batched request"),
    ),
    Bite(
        "cache_differs",
        "test_determinism.py::test_prefix_cache_cold_and_warm_give_the_same_output",
        determinism.one_output,
        determinism.CACHED,
    ),
    Bite(
        "seed_ignored",
        "test_determinism.py::test_seeded_sampling_reproduces",
        determinism.one_output,
        determinism.SEEDED,
    ),
    # issue 14: determinism judges what the user receives
    Bite("text_differs", BURST, determinism.one_output, BURST_DIFFERS),
    Bite(
        "seeded_text_differs",
        "test_determinism.py::test_seeded_sampling_reproduces",
        determinism.one_output,
        determinism.SEEDED,
    ),
    Bite("token_ids_differ", BURST, determinism.one_output, BURST_DIFFERS),
    Bite(
        "logprobs_misspell",
        f"{SPELL}[/v1/completions]",
        logprobs.tokens_spell_text,
        logprobs.MISSPELLED,
    ),
    Bite(
        "cancel_leak",
        "test_cancellation.py::test_dropped_streams_are_freed",
        cancellation.streams_freed,
        cancellation.KEPT_RUNNING,
    ),
    # issue 14: idle means zero
    Bite(
        "running_stuck",
        "test_cancellation.py::test_dropped_streams_are_freed",
        cancellation.idle_at_zero,
        cancellation.NOT_IDLE,
    ),
    Bite(
        "slow_first_token",
        LATENCY_C1,
        slo.slo_met,
        SLO_MISSED,
        ["--vllm-slo=ttft_p95_ms=500", *FEW],
    ),
    Bite("slow_tokens", LATENCY_C1, slo.slo_met, SLO_MISSED, ["--vllm-slo=tpot_p95_ms=20", *FEW]),
    Bite(
        "errors_under_load",
        "test_latency.py::test_streamed_completions_at_each_concurrency_level[c8]",
        slo.slo_met,
        LOAD_FAILED,
        QUICK,
    ),
    Bite(
        "embed_slow",
        "test_latency.py::test_embeddings_latency_and_rate[single]",
        slo.slo_met,
        SLO_MISSED,
        [*EMBED, *FEW],
    ),
    Bite("memory_grows", MEMORY, memory.memory_flat, memory.GROWS, QUICK),
    # issue 15: the harness checks itself
    Bite(
        "server_histogram_slow", LATENCY_C1, slo.harness_sound, slo.IMPOSSIBLE, FEW, (slo.slo_met,)
    ),
    # More checks proven by a fault that already has a row above, or by one of its own.
    Bite(
        "health_missing",
        "test_health.py::test_health_endpoint_answers_200",
        checks.request_succeeded,
        failed("/health is not 200 on a ready server"),
    ),
    Bite(
        "models_500",
        "test_health.py::test_models_lists_the_model_under_test",
        checks.request_succeeded,
        failed("GET /v1/models failed"),
        [f"--vllm-model={MODEL}"],
    ),
    Bite(
        "extra_field",
        "test_compliance.py::test_models_match_the_schema",
        schema.matches,
        schema.EXTRA_FIELD,
        ["--vllm-profile=openai"],
    ),
    Bite(
        "logprobs_count_wrong",
        f"{LOGPROB_COUNT}[/v1/completions]",
        semantics.completion_logprobs_count,
        semantics.TOP_COUNT,
    ),
    Bite(
        "usage_mismatch",
        "test_generated.py::test_generated_valid_requests_succeed",
        semantics.usage_adds_up,
        semantics.USAGE_SUM,
        [],
        CONFORMS,
    ),
    Bite(
        "error_shape",
        "test_generated.py::test_generated_wrong_types_are_rejected",
        errors.error_body,
        errors.NOT_ERROR_OBJECT,
    ),
    Bite(
        "embed_no_token_ids",
        "test_embeddings.py::test_token_ids_are_accepted",
        checks.request_succeeded,
        failed("POST /v1/embeddings failed"),
        EMBED,
    ),
    Bite(
        "metrics_busy_500",
        "test_metrics.py::test_metrics_scrape_under_load_does_not_fail",
        checks.request_succeeded,
        failed("A request failed while /metrics was scraped"),
    ),
    Bite(
        "slow_first_token",
        "test_latency.py::test_streamed_completions_at_an_open_loop_arrival_rate",
        slo.slo_met,
        SLO_MISSED,
        ["--vllm-slo=ttft_p95_ms=500", "--vllm-latency-rate=10", *FEW],
    ),
    Bite(
        "embed_slow",
        "test_latency.py::test_embeddings_latency_and_rate[batch-16]",
        slo.slo_met,
        SLO_MISSED,
        [*EMBED, *FEW],
    ),
    Bite("stream_no_done", MEMORY, memory.load_served, LOAD_FAILED, QUICK),
    # issue 14: determinism judges what the user receives
    Bite(
        "logprobs_misspell",
        f"{SPELL}[/v1/chat/completions]",
        logprobs.tokens_spell_text,
        logprobs.MISSPELLED,
    ),
    # issue 14: every server value validated before use
    Bite("metrics_unparseable", MEMORY, metrics.prometheus_text, metrics.UNPARSEABLE, QUICK),
    Bite(
        "metrics_nan",
        "test_metrics.py::test_server_ttft_agrees_with_the_client",
        values.finite_number,
        values.INFINITE,
    ),
    # issue 16: every registered check bites
    Bite(
        "choices_string",
        f"{COMPLETIONS_SCHEMA}[stream]",
        schema.stream_matches,
        schema.VIOLATION,
        [],
        CONFORMS,
    ),
    Bite(
        "max_tokens_ignored",
        "test_health.py::test_canary_request_with_one_token[/v1/completions]",
        health.one_token,
        health.CANARY_OVERRUN,
    ),
    Bite(
        "stream_no_done",
        "test_health.py::test_canary_stream_ends_with_done",
        streaming.ends_with_done,
        streaming.NO_DONE,
        [],
        (streaming.well_formed,),
    ),
    Bite(
        "stream_text_differs",
        "test_determinism.py::test_streaming_and_non_streaming_give_the_same_tokens",
        determinism.streams_as_returned,
        determinism.STREAMED.titled(prompt="*"),
    ),
    # issue 17: structured outputs
    Bite(
        "structured_ignored",
        f"{STRUCTURED_SCHEMA}[json_schema]",
        structured.json_answer,
        structured.IGNORED,
    ),
    Bite(
        "structured_not_json",
        f"{STRUCTURED_OBJECT}[json_object]",
        structured.json_answer,
        structured.NOT_JSON,
    ),
    Bite(
        "structured_padded",
        f"{STRUCTURED_SCHEMA}[json_schema-stream]",
        structured.json_answer,
        structured.TRUNCATED,
    ),
    Bite(
        "structured_finish_length",
        f"{STRUCTURED_SCHEMA}[json_schema]",
        structured.json_answer,
        structured.FINISH,
    ),
    Bite(
        "structured_schema_violated",
        f"{STRUCTURED_SCHEMA}[json_schema]",
        structured.matches_json_schema,
        structured.SCHEMA,
    ),
    Bite(
        "structured_array",
        f"{STRUCTURED_OBJECT}[json_object-stream]",
        structured.is_json_object,
        structured.NOT_OBJECT,
    ),
    Bite(
        "structured_refusal_with_content",
        "test_structured_outputs.py::test_refusal_is_null_or_replaces_the_content[json_schema]",
        structured.refusal_as_documented,
        structured.REFUSAL_WITH_CONTENT,
    ),
    Bite(
        "structured_stream_cumulative",
        f"{STRUCTURED_SCHEMA}[json_schema-stream]",
        structured.json_answer,
        structured.NOT_JSON,
    ),
    Bite(
        "structured_stream_differs",
        "test_structured_outputs.py::test_streamed_json_equals_the_non_streamed_json[json_schema]",
        structured.same_json,
        structured.STREAM_DIFFERS,
    ),
]
# issue 17: tools
TOOLS = "test_tools.py::test_"
TOOL_STREAM = f"{TOOLS}streamed_tool_calls_assemble_into_the_returned_calls"
ROWS += [
    Bite(
        "tool_wrong_name",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.calls_well_formed,
        tools.NAME_NOT_OFFERED,
    ),
    Bite(
        "tool_duplicate_ids",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.calls_well_formed,
        tools.IDS_REPEAT,
    ),
    Bite(
        "tool_type_missing",
        f"{TOOLS}auto_gives_a_well_formed_answer_either_way",
        tools.calls_well_formed,
        tools.NOT_FUNCTION,
    ),
    Bite(
        "tool_args_not_json",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.arguments_are_json_objects,
        tools.ARGS_NOT_JSON,
    ),
    Bite(
        "tool_args_not_object",
        f"{TOOLS}a_named_function_gives_exactly_one_call_to_it",
        tools.arguments_are_json_objects,
        tools.ARGS_NOT_OBJECT,
    ),
    Bite(
        "tool_args_violate_schema",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.strict_arguments_valid,
        tools.ARGS_INVALID,
    ),
    Bite(
        "tool_finish_stop",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.finish_reason_matches,
        tools.FINISH_NOT_TOOL_CALLS,
    ),
    Bite(
        "tool_finish_without_calls",
        f"{TOOLS}none_gives_no_call",
        tools.finish_reason_matches,
        tools.FINISH_WITHOUT_CALLS,
    ),
    Bite(
        "tool_required_text",
        f"{TOOLS}required_gives_at_least_one_call",
        tools.required_call,
        tools.REQUIRED_IGNORED,
    ),
    Bite("tool_none_called", f"{TOOLS}none_gives_no_call", tools.no_call, tools.NONE_IGNORED),
    Bite(
        "tool_named_ignored",
        f"{TOOLS}a_named_function_gives_exactly_one_call_to_it",
        tools.named_call,
        tools.NAMED_IGNORED,
    ),
    Bite(
        "tool_parallel_ignored",
        f"{TOOLS}parallel_tool_calls_false_gives_at_most_one_call",
        tools.at_most_one_call,
        tools.PARALLEL_IGNORED,
    ),
    Bite(
        "tool_auto_empty",
        f"{TOOLS}auto_gives_a_well_formed_answer_either_way",
        tools.something_answered,
        tools.EMPTY,
        [],
        (),
    ),
    Bite(
        "tool_stream_no_index",
        f"{TOOL_STREAM}[required]",
        tools.assembled,
        tools.STREAM_NO_INDEX,
        [],
        (streaming.well_formed,),
    ),
    Bite(
        "tool_stream_name_late",
        f"{TOOL_STREAM}[named]",
        tools.assembled,
        tools.STREAM_HEAD,
        [],
        (streaming.well_formed,),
    ),
    Bite(
        "tool_stream_differs",
        f"{TOOL_STREAM}[required]",
        tools.same_calls,
        tools.STREAM_DIFFERS,
        [],
        (streaming.well_formed, tools.assembled),
    ),
    Bite(
        "tool_followup_rejected",
        f"{TOOLS}a_tool_result_turn_is_accepted",
        checks.request_succeeded,
        failed("A tool-result turn (role 'tool' with its tool_call_id) was refused"),
    ),
    Bite(
        "tool_calls_differ",
        "test_determinism.py::test_a_burst_of_identical_tool_call_requests_gives_one_set_of_calls",
        determinism.one_output,
        determinism.TOOL_BURST.titled(n=20, c=10),
        ["--vllm-determinism-requests=20"],
    ),
    # issue 17: responses
    Bite(
        "responses_missing_field",
        f"{RESPONSES}test_a_response_matches_the_schema",
        schema.matches,
        schema.VIOLATION,
    ),
    Bite(
        "responses_status_in_progress",
        f"{RESPONSES}test_a_finished_response_has_a_final_status",
        responses.finished,
        responses.UNFINISHED,
    ),
    Bite(
        "responses_no_output",
        f"{RESPONSES}test_the_output_carries_the_text",
        responses.output_text,
        responses.NO_TEXT,
    ),
    Bite(
        "responses_usage_mismatch",
        f"{RESPONSES}test_usage_adds_up",
        responses.usage_adds_up,
        responses.USAGE_SUM,
    ),
    Bite(
        "responses_max_output_ignored",
        f"{RESPONSES}test_max_output_tokens_is_respected",
        responses.max_output_tokens_respected,
        responses.OVERRUN,
    ),
    Bite(
        "responses_truncated_completed",
        f"{RESPONSES}test_max_output_tokens_is_respected",
        responses.max_output_tokens_respected,
        responses.NOT_INCOMPLETE,
    ),
    Bite(
        "responses_instructions_ignored",
        f"{RESPONSES}test_instructions_are_honoured",
        responses.instructions_honoured,
        responses.NOT_ECHOED,
    ),
    Bite(
        "responses_event_name_wrong",
        f"{RESPONSES}test_sequence_numbers_strictly_increase[plain]",
        responses.typed_events,
        responses.EVENT_NAME,
    ),
    Bite(
        "responses_event_missing_field",
        f"{RESPONSES}test_stream_events_are_typed_and_match_the_schema[plain]",
        responses.events_match,
        schema.VIOLATION,
        [],
        (schema.matches,),
    ),
    Bite(
        "responses_events_out_of_order",
        f"{RESPONSES}test_stream_events_come_in_the_documented_order[plain]",
        responses.events_in_order,
        responses.ORDER,
    ),
    Bite(
        "responses_sequence_repeats",
        f"{RESPONSES}test_sequence_numbers_strictly_increase[truncated]",
        responses.sequence_increases,
        responses.SEQUENCE,
    ),
    Bite(
        "responses_deltas_differ",
        f"{RESPONSES}test_streamed_deltas_add_up_to_the_final_text[plain]",
        responses.deltas_add_up,
        responses.DELTAS,
    ),
    Bite(
        "responses_no_terminal",
        f"{RESPONSES}test_the_stream_ends_with_a_terminal_event[plain]",
        responses.ends_with_terminal,
        responses.NO_TERMINAL,
    ),
    Bite(
        "responses_terminal_mismatch",
        f"{RESPONSES}test_the_stream_ends_with_a_terminal_event[truncated]",
        responses.ends_with_terminal,
        responses.TERMINAL_STATUS,
    ),
    Bite(
        "responses_store_differs",
        f"{RESPONSES}test_a_stored_response_can_be_retrieved",
        responses.same_stored,
        responses.STORED,
    ),
    Bite(
        "responses_previous_ignored",
        f"{RESPONSES}test_previous_response_id_continues_the_conversation",
        responses.continues,
        responses.PREVIOUS,
    ),
    Bite(
        "error_shape",
        f"{RESPONSES}test_an_invalid_request_is_rejected[input-wrong-type]",
        errors.error_body,
        errors.NOT_ERROR_OBJECT,
    ),
    Bite(
        "invalid_accepted",
        f"{RESPONSES}test_an_invalid_request_is_rejected[negative-max-output-tokens]",
        errors.rejected,
        errors.ACCEPTED,
    ),
    Bite(
        "slow_first_token",
        "test_latency.py::test_streamed_responses_time_to_first_text",
        slo.slo_met,
        SLO_MISSED,
        ["--vllm-slo=ttft_p95_ms=500", *FEW],
    ),
]
#: Registered checks no fault of the fault server reaches, and why.
UNPROVEN: dict[AnyCheck, str] = {
    harness.answer_read: "none: it names a harness bug; the clean fault server's run must "
    "never show it",
    checks.json_object: "none yet: every fault answers a JSON object",
    health.lists_model: "none yet: the fault server lists the model it serves",
    memory.sampled: "none: it judges the harness's sampling (a window too short to fit)",
    metrics.histogram_buckets: "none: a NaN bucket only loses the latency cross-check; "
    "tests/test_hostile_values.py",
    streaming.first_token_at: "none yet: every fault stream carries text",
    streaming.some_chunk: "none yet: every fault stream carries chunks",
    topology.reached_backend: "none: needs the two-instance service (tests/test_containers.py)",
    topology.health_drops: "none: needs the two-instance service (tests/test_containers.py)",
    topology.health_recovers: "none: needs the two-instance service (tests/test_containers.py)",
}
# Covered by tests/test_health_suite.py and tests/test_readiness.py.
ELSEWHERE = {
    "health_503",
    "models_401",
    "completions_500",
    "hang",
    "huge_body",
    "echo_key",
    "stream_stalls",
    "replica_differs",  # tests/test_determinism_suite.py
    "html_injection",
}  # tests/test_html_report.py
# issue 14: load runs fit the server
ELSEWHERE |= {"embeddings_not_served"}  # tests/test_locust_fit.py
# issue 14: bounded requests and SSE as the spec defines it (tests/test_hostile_transport.py)
ELSEWHERE |= {
    "trickle",
    "huge_announced_body",
    "many_headers",
    "http_101",
    "sse_cr_only",
    "sse_other_fields",
}
# issue 14: secrets and untrusted text (tests/test_untrusted_text.py)
ELSEWHERE |= {"echo_key_everywhere", "model_id_escapes", "model_id_surrogate", "models_10000"}
# issue 14: every server value validated before use (tests/test_hostile_values.py)
ELSEWHERE |= {"models_data_not_list", "deep_json"}
# issue 17: structured outputs (tests/test_structured_suite.py)
ELSEWHERE |= {"structured_unsupported"}
# issue 17: tools (tests/test_tools_suite.py)
ELSEWHERE |= {"tools_not_served"}
# issue 17: responses (tests/test_responses_suite.py)
ELSEWHERE |= {"responses_not_served", "responses_no_store"}

# issue 18: baseline
from pytest_vllm_conformance.checks import baseline as baseline_checks  # noqa: E402

#: The baseline the rows below compare with: a clean run of the fault server recorded once
#: per session (by :func:`_baseline_recorded`), written as this file in each row's folder.
BASELINE = ["--vllm-baseline=baseline.json"]
BASELINE_RECORD = [
    "test_determinism.py::test_a_burst_of_identical_requests_gives_one_output[short]",
    "test_latency.py::test_streamed_completions_at_each_concurrency_level",
    "--vllm-latency-concurrency=1",
    "--vllm-latency-requests=24",  # at least compare.MIN_REQUESTS[50] a side
    "--vllm-latency-warmup=2",
    "--vllm-latency-max-tokens=16",
    "--vllm-determinism-requests=4",
    "--vllm-json=baseline.json",
]
#: The recorded tests again, then the baseline suite: the latency level is judged at the same
#: place in its run as the baseline's (a level measured elsewhere is not compared).
BASELINE_AGAIN = [*BASELINE, *BASELINE_RECORD[:-1]]
_BASELINE_BYTES: list[bytes] = []
ROWS += [
    Bite(
        "greedy_changed",
        "test_baseline.py::test_greedy_answer_equals_the_baseline[short]",
        baseline_checks.same_output,
        baseline_checks.OUTPUT_CHANGED,
        BASELINE,
    ),
    Bite(
        "slow_30ms",
        "test_baseline.py::test_latency_has_not_regressed[concurrency 1]",
        baseline_checks.latency_within_tolerance,
        baseline_checks.LATENCY_REGRESSED.titled(level="concurrency 1"),
        BASELINE_AGAIN,
    ),
]


# review: issue 17 (the reviewer's findings 7, 8, 9, 10, 12, 13)
ROWS += [
    Bite(
        "responses_no_store",
        f"{RESPONSES}test_a_stored_response_can_be_retrieved",
        responses.retrievable,
        responses.NOT_RETRIEVABLE,
        ["--vllm-profile=openai"],
    ),
    Bite(
        "responses_no_deltas",
        f"{RESPONSES}test_streamed_deltas_add_up_to_the_final_text[plain]",
        responses.deltas_add_up,
        responses.DELTAS,
    ),
    Bite(
        "responses_terminal_empty",
        f"{RESPONSES}test_streamed_deltas_add_up_to_the_final_text[truncated]",
        responses.deltas_add_up,
        responses.DELTAS,
    ),
    Bite(
        "structured_unrelated_400",
        f"{STRUCTURED_SCHEMA}[json_schema]",
        checks.request_succeeded,
        failed("POST /v1/chat/completions with response_format json_schema failed"),
    ),
    Bite(
        "structured_refused",
        f"{STRUCTURED_SCHEMA}[json_schema-stream]",
        structured.not_refused,
        structured.REFUSED,
    ),
    Bite(
        "tool_stream_type_later",
        f"{TOOL_STREAM}[required]",
        tools.calls_well_formed,
        tools.NOT_FUNCTION,
        [],
        (streaming.well_formed, tools.assembled),
    ),
    Bite(
        "tool_parser_crash",
        f"{TOOLS}required_gives_at_least_one_call",
        checks.request_succeeded,
        failed("POST /v1/chat/completions with tools failed"),
    ),
]
ELSEWHERE |= {"responses_store_refused"}  # tests/test_responses_suite.py


@pytest.fixture(autouse=True)
def _baseline_recorded(request: pytest.FixtureRequest) -> None:
    """For a row that compares with a baseline: its baseline.json, recorded from the clean
    fault server at the first such row (before the row switches its fault on)."""
    spec = getattr(request.node, "callspec", None)
    row = spec.params.get("row") if spec is not None else None
    if request.node.name.startswith("test_the_check_fails") and row and row.extra[:1] == BASELINE:
        tester: pytest.Pytester = request.getfixturevalue("pytester")
        fault: FaultServer = request.getfixturevalue("fault")
        if not _BASELINE_BYTES:
            tester.runpytest(f"--vllm-url={fault.url}", *BASELINE_RECORD, "-p", "no:randomly")
            _BASELINE_BYTES.append((tester.path / "baseline.json").read_bytes())
        (tester.path / "baseline.json").write_bytes(_BASELINE_BYTES[0])


def test_every_fault_has_a_check() -> None:
    assert set(FAULTS) == {row[0] for row in ROWS} | ELSEWHERE


@pytest.mark.parametrize("profile", ["openai", "vllm"])
def test_the_clean_fault_server_passes_every_suite(
    pytester: pytest.Pytester, fault: FaultServer, profile: str
) -> None:
    fault.api_key = "sk-the-key"
    result = pytester.runpytest(
        f"--vllm-url={fault.url}",
        f"--vllm-profile={profile}",
        "--vllm-api-key=sk-the-key",
        *EMBED,
        "-rfEs",
        "-p",
        "no:randomly",
        "--vllm-determinism-requests=20",
        *QUICK,
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0, result.stdout.str()
    assert "Harness could not read the answer" not in result.stdout.str()  # no harness bug
    skipped = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    allowed = (
        "the vllm profile allows this",
        "one server: pass --vllm-url once per replica",
        "needs the two-instance service started by the plugin",
        "no --vllm-baseline given",  # issue 18: baseline
    )
    assert all(any(a in line for a in allowed) for line in skipped), skipped


def pattern(verdict: Verdict) -> str:
    """The verdict's title as an fnmatch pattern: a placeholder left unfilled, or a ``*`` a
    row filled in, matches anything; brackets are literal."""
    title = verdict.text if verdict.args else re.sub(r"\{[^}]*\}", "*", verdict.title)
    return title.replace("[", "[[]")


def proofs() -> dict[str, list[str]]:
    """check qualname -> the faults it fails on: its own rows, and rows whose verdict it
    raises on the way (a bundle such as ``answers.answer_conforms`` gives its inner checks'
    verdicts); a check merely called on the way to another's verdict is not credited."""
    found: dict[str, list[str]] = {}
    for row in ROWS:
        for c in (row.check, *row.via):
            if any(row.verdict.same_kind(v) for v in c.verdicts):
                found.setdefault(c.qualname, []).append(row.fault)
    return found


def markdown() -> str:
    """``docs/checks.md`` as the registry and this table render it."""
    return render_markdown(proofs(), {c.qualname: why for c, why in UNPROVEN.items()})


def test_every_registered_check_bites_or_says_why_not() -> None:
    registered = {c.qualname for c in all_checks()}
    unproven = {c.qualname for c in UNPROVEN}
    assert registered - set(proofs()) == unproven, "a registered check needs a row in ROWS"
    assert not unproven & set(proofs()), "a check with a row is not unproven"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.fault}:{r.node.split('::')[1]}" for r in ROWS])
def test_each_row_shows_a_verdict_of_its_check(row: Bite) -> None:
    assert any(row.verdict.same_kind(v) for v in row.check.verdicts), row
    assert all(isinstance(c, Check) for c in (row.check, *row.via))


def test_the_checks_page_is_current() -> None:
    page = Path(__file__).parent.parent / "docs" / "checks.md"
    assert page.read_text(encoding="utf-8") == markdown(), (
        "regenerate it: python -m tests.test_checks_bite > docs/checks.md"
    )


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.fault}:{r.node.split('::')[1]}" for r in ROWS])
def test_the_check_fails_on_its_defect(
    pytester: pytest.Pytester, fault: FaultServer, row: Bite
) -> None:
    fault.faults = {row.fault}
    if row.fault == "no_auth":
        fault.api_key = "sk-the-key"
    result = pytester.runpytest(
        f"--vllm-url={fault.url}", row.node, *row.extra, "-p", "no:randomly"
    )
    others = sum("::" in arg and not arg.startswith("-") for arg in row.extra)
    result.assert_outcomes(failed=1, passed=others)  # tests a row runs first pass
    result.stdout.fnmatch_lines([f"*{pattern(row.verdict)}*"])
    assert "Traceback" not in result.stdout.str()


if __name__ == "__main__":
    print(markdown(), end="")
