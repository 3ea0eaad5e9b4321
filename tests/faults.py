"""Every defect the fault server can be switched into, by the suite whose check catches it."""

from __future__ import annotations

FAULTS: dict[str, str] = {
    # readiness and health
    "health_503": "GET /health answers 503 for ever (a server that never gets ready)",
    "health_missing": "there is no /health (readiness falls back to /v1/models)",
    "models_500": "GET /v1/models answers 500",
    "models_401": "GET /v1/models answers 401 whatever the key",
    "completions_500": "every completion request answers 500",
    "hang": "completion requests never answer",
    "huge_body": "completion bodies are 80 MB",
    "echo_key": "error bodies repeat the Authorization header back",
    # issue 14: secrets and untrusted text
    "echo_key_everywhere": "the key is echoed in errors, texts, SSE, /version, the model id, "
    "headers and /metrics labels",
    "model_id_escapes": "the model id holds ANSI colour, an OSC window title and a newline",
    "model_id_surrogate": "the model id holds a lone surrogate (a legal JSON escape, \\ud800)",
    "models_10000": "/v1/models lists 10,000 models (a 540 KB list of ids)",
    # compliance: schema and semantics
    "extra_field": "responses carry a field the OpenAI API does not define",
    "wrong_object": "non-streamed responses say object 'completion'",
    "created_string": "created is a string, not a Unix time",
    "finish_reason_null": "non-streamed choices have finish_reason null",
    "missing_usage": "non-streamed responses have no usage",
    "usage_mismatch": "usage.total_tokens is not prompt + completion",
    "max_tokens_ignored": "max_tokens is overrun: 3 tokens more than asked",
    "stop_ignored": "stop sequences are ignored",
    "stop_included": "the stop sequence is left in the text",
    "n_ignored": "n is ignored: one choice",
    "bad_indices": "every choice has index 0",
    "echo_ignored": "echo is ignored",
    "logprobs_count_wrong": "two top logprobs more than asked for",
    "logprob_positive": "completion token log-probabilities are +0.5",
    "stream_text_differs": "the streamed text differs from the non-streamed text",
    # issue 14: every server value validated before use
    "choices_string": "answers and streamed chunks have choices as a string",
    "usage_list": "non-streamed usage is a list, not an object",
    "models_data_not_list": "GET /v1/models has data: 7",
    "deep_json": "the GET /v1/models body is nested 100,000 levels deep",
    "metrics_nan": "process_resident_memory_bytes and the vllm: histograms carry NaN",
    # errors
    "invalid_accepted": "out-of-range values (negative max_tokens, temperature 5) are accepted",
    "unknown_model_200": "an unknown model is served by the default one",
    "error_500_on_invalid": "invalid requests answer 500",
    "error_shape": "error bodies are {'detail': ...}, not OpenAI's error object",
    "no_auth": "a configured key is not enforced",
    # streaming
    "stream_no_done": "streams end without data: [DONE]",
    "stream_non_json": "one streamed data: line is not JSON",
    "stream_bad_frame": "a stream carries a line that is no SSE field",
    "stream_wrong_type": "streams are sent as application/json",
    "stream_stalls": "streams stop sending after two chunks and never end",
    "stream_id_changes": "every chunk of a stream has a different id",
    "stream_no_role": "the first chat chunk carries no role",
    "stream_finish_early": "finish_reason is set on the first content chunk too",
    "stream_usage_with_choices": "the usage chunk carries a choice",
    # issue 14: bounded requests and SSE as the spec defines it
    "trickle": "chat completion answers trickle out one byte every 0.5 s",
    "huge_announced_body": "chat completion answers announce 5 GB and send 100 MiB at once",
    "many_headers": "chat completion answers carry 50,000 headers of one name",
    "http_101": "chat completion requests are answered with 101 Switching Protocols",
    "sse_cr_only": "streams end their lines with CR alone (legal SSE: must pass)",
    "sse_other_fields": "streams carry comments, event:, id:, retry: and unknown fields "
    "(legal SSE: must pass)",
    # embeddings
    "embed_order": "batch embeddings come back reversed with fresh indices",
    "embed_dims": "the second vector of a batch is one dimension short",
    "embed_base64_differs": "base64 vectors differ from the float ones",
    "embed_no_usage": "embedding responses have no usage",
    "embed_bad_input_200": "invalid embedding input answers 200 with no data",
    "embed_no_token_ids": "token-id embedding input is refused",
    # issue 16: every embedding check bites on its own defect
    "embed_count_short": "a batch answers one embedding fewer than it was sent",
    "embed_index_reversed": "a batch keeps its order but numbers its items n-1..0",
    "embed_not_base64": "base64 embeddings are not base64 ('!!' prepended)",
    "embed_overflow": "the first component of a float embedding is 1e999 (infinite once parsed)",
    # determinism
    "diverge_sometimes": "about 1 greedy request in 100 (divergence_rate) answers differently",
    "logprob_drift": "logprobs drift by ~1e-6 from request to request, tokens unchanged",
    "replica_differs": "this server's greedy answers differ from another replica's",
    "batch_differs": "a prompt answers differently inside a multi-prompt request",
    "cache_differs": "a prompt whose prefix was seen before answers differently",
    "seed_ignored": "seed is ignored: sampling never reproduces",
    # issue 14: determinism judges what the user receives
    "text_differs": "about 1 greedy request in 100 (divergence_rate) shows a different text, "
    "its logprob tokens and token ids unchanged",
    "seeded_text_differs": "seeded sampling shows a different text each time, its logprob "
    "tokens unchanged",
    "token_ids_differ": "about 1 request in 100 (divergence_rate) returns a random first token "
    "id, its text and logprob tokens unchanged",
    "logprobs_misspell": "the logprob tokens do not spell the text (the first is upper-cased)",
    # metrics and cancellation
    "metrics_missing": "there is no /metrics",
    "metrics_unparseable": "/metrics has a line that is not Prometheus text",
    "metrics_names_missing": "vllm:num_requests_running is missing",
    "metrics_counter_decreases": "vllm:prompt_tokens_total goes down",
    "metrics_histogram_stuck": "the latency histograms never count a request",
    "metrics_ttft_off": "the TTFT histogram is in milliseconds, not seconds",
    "metrics_busy_500": "/metrics answers 500 while a request runs",
    "cancel_leak": "a dropped stream is never taken off the running gauge",
    # issue 14: idle means zero
    "running_stuck": "vllm:num_requests_running reads one more than is running: 1 when idle",
    # latency and memory
    "slow_first_token": "the first token comes 1.5 s late",
    "slow_tokens": "every token takes 60 ms",
    "errors_under_load": "with 4 or more requests in flight, new ones get a 503",
    "html_injection": "/version and error messages carry <script> and onerror payloads",
    "embed_slow": "embedding requests take 0.6 s",
    "memory_grows": "process_resident_memory_bytes on /metrics grows by 16 MB a second",
    # issue 14: load runs fit the server
    "embeddings_not_served": "POST /v1/embeddings answers 501 with an OpenAI error object",
    # issue 15: the harness checks itself
    "server_histogram_slow": "the TTFT and E2E histograms record 10x the real times, so the "
    "client's p50 lies below the server's median bucket",
    # issue 17: structured outputs
    "structured_unsupported": "response_format requests answer 400 'response_format is not "
    "supported by this server' (a skip, not a failure)",
    "structured_ignored": "response_format is ignored: the answer is plain text",
    "structured_not_json": "the JSON answer stops half-way, with finish_reason stop",
    "structured_padded": "the JSON answer is '{' then spaces until max_tokens (finish length)",
    "structured_finish_length": "a complete JSON answer says finish_reason length",
    "structured_schema_violated": "json_schema answers carry a property the schema forbids",
    "structured_array": "json_object answers are a JSON array",
    "structured_refusal_with_content": "structured answers carry a refusal beside the content",
    "structured_stream_cumulative": "each streamed delta repeats the whole answer so far",
    "structured_stream_differs": "the streamed JSON differs from the non-streamed JSON",
    # issue 17: tools
    "tools_not_served": "tool_choice auto, required and named answer vLLM's 400 '... requires "
    "--tool-call-parser ...' (none is served)",
    "tool_wrong_name": "tool calls name a function that was not offered (its name + '_v2')",
    "tool_duplicate_ids": "a second call is added with the first call's id",
    "tool_type_missing": "tool calls have no type",
    "tool_args_not_json": "tool call arguments lose their closing brace",
    "tool_args_not_object": "tool call arguments are '9049'",
    "tool_args_violate_schema": "strict tool call arguments carry a property the schema forbids",
    "tool_finish_stop": "answers with tool calls finish with 'stop' (auto and required too)",
    "tool_finish_without_calls": "answers without tool calls finish with 'tool_calls'",
    "tool_required_text": "tool_choice 'required' is answered with text",
    "tool_none_called": "tool_choice 'none' is answered with a call",
    "tool_named_ignored": "a named tool_choice is answered with a call to another function",
    "tool_parallel_ignored": "parallel_tool_calls false is answered with two calls",
    "tool_auto_empty": "tool_choice 'auto' is answered with content null and no call",
    "tool_stream_no_index": "streamed tool-call deltas carry no index",
    "tool_stream_name_late": "a streamed call's first delta carries its id, its name the next",
    "tool_stream_differs": "streamed tool calls carry other (valid) arguments than returned",
    "tool_followup_rejected": "a message with role 'tool' is refused with a 400",
    "tool_calls_differ": "every other identical tool-call request gets other (valid) arguments",
    # issue 17: responses
    "responses_not_served": "POST and GET /v1/responses answer 404 (a server without the "
    "Responses API: the suite must skip, saying so)",
    "responses_no_store": "nothing is stored: GET /v1/responses/{id} answers 404 (vLLM 0.32 "
    "without VLLM_ENABLE_RESPONSES_API_STORE)",
    "responses_missing_field": "non-streamed Response objects have no error field",
    "responses_status_in_progress": "non-streamed Responses say status in_progress",
    "responses_no_output": "non-streamed Responses have an empty output list",
    "responses_usage_mismatch": "Response usage.total_tokens is not input + output",
    "responses_max_output_ignored": "max_output_tokens is overrun: 3 tokens more than asked",
    "responses_truncated_completed": "a Response cut by max_output_tokens says completed",
    "responses_instructions_ignored": "instructions are neither echoed nor given to the model",
    "responses_event_name_wrong": "every Responses stream event's event: line says message",
    "responses_event_missing_field": "streamed output_text.delta events have no item_id",
    "responses_events_out_of_order": "content_part.added comes before output_item.added",
    "responses_sequence_repeats": "every Responses stream event has sequence_number 0",
    "responses_deltas_differ": "the second output_text.delta is not sent (the done text has it)",
    "responses_no_terminal": "Responses streams end after output_item.done, with no terminal event",
    "responses_terminal_mismatch": "a truncated stream ends with response.completed carrying "
    "status incomplete (vLLM 0.32's way)",
    "responses_store_differs": "GET /v1/responses/{id} returns another text than was answered",
    "responses_previous_ignored": "previous_response_id is accepted, but the earlier turns are "
    "not given to the model",
    # issue 18: baseline
    "greedy_changed": "every answer changes alike (another model build): consistent within a "
    "run, so the determinism suite still passes, but not the baseline's",
    "slow_30ms": "every generation starts 30 ms later",
    # review: issue 17 (the reviewer's findings 7, 8, 9, 10, 12, 13)
    "responses_store_refused": "POST /v1/responses with store: true answers 400 'store is not "
    "supported' (a server without storage: the storage tests must skip, saying so)",
    "responses_no_deltas": "Responses streams send no output_text.delta (the done events carry "
    "the text)",
    "responses_terminal_empty": "the terminal event's Response has output [] after the streamed "
    "text",
    "structured_unrelated_400": "response_format requests answer 400 'the seed parameter is not "
    "supported' (a refusal about another field: not a 'not supported' skip)",
    "structured_refused": "response_format requests are answered with a refusal and no content",
    "tool_stream_type_later": "a streamed call's argument deltas say type 'custom' (its first "
    "delta says 'function')",
    "tool_parser_crash": "tool requests answer 500 'tool parser error: function call requires a "
    "closing tag' (a crash, not llama.cpp's --jinja refusal)",
}
