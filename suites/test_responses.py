"""The Responses API (``/v1/responses``): the Response object, its typed stream, storage.

Probed, not assumed: a server that does not serve ``POST /v1/responses`` (404, 405, 501)
skips the suite, and one that refuses ``store: true`` skips the storage tests, each with
"not supported: <the server's message>". A server that accepts ``store: true`` and then
cannot find the response fails the storage tests; the vllm profile allows it (vLLM keeps
responses only with VLLM_ENABLE_RESPONSES_API_STORE=1), skipping them with that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from pytest_vllm_conformance import checks, untrusted
from pytest_vllm_conformance.checks import errors, responses, streaming, values
from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.client import Client, ClientError, Response
from pytest_vllm_conformance.failures import Findings
from pytest_vllm_conformance.target.capabilities import not_supported
from pytest_vllm_conformance.workload import responses as shapes
from pytest_vllm_conformance.workload.responses import PATH

pytestmark = pytest.mark.responses
#: Invalid requests tolerate no long generation: a server that starts one has accepted it.
ERROR_TIMEOUT_S = 15.0
STREAMS = {"plain": {}, "truncated": {"max_output_tokens": shapes.TRUNCATE_AT}}
# name -> (body edits, statuses allowed)
INVALID: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "input-wrong-type": ({"input": 7}, (400, 422)),
    "negative-max-output-tokens": ({"max_output_tokens": -5}, (400, 422)),
    "temperature-above-2": ({"temperature": 5}, (400, 422)),
    "unknown-model": ({"model": "no-such-model-x9"}, (400, 404)),
}


class Responses:
    """Sends ``/v1/responses``; each shared request is sent once per module, and its failure
    is shared too (a server that stalls costs one timeout, not one per test)."""

    def __init__(self, client: Client, model: str) -> None:
        self.client, self.model = client, model
        self._cache: dict[str, Response | Exception] = {}

    def send(self, **extra: Any) -> Response:
        return self.client.post(PATH, shapes.create(self.model, **extra))

    def stream(self, **extra: Any) -> Response:
        return self.client.stream(PATH, shapes.create(self.model, stream=True, **extra))

    def shared(self, name: str, make: Callable[[], Response]) -> Response:
        if name not in self._cache:
            try:
                self._cache[name] = make()
            except ClientError as exc:
                self._cache[name] = exc
                raise
        got = self._cache[name]
        if isinstance(got, Exception):
            raise got.with_traceback(None)
        return got

    def ok(self, r: Response, what: str = f"POST {PATH}") -> dict[str, Any]:
        checks.request_succeeded(r, checks.Status(title=f"{what} failed"))
        return checks.json_object(r, checks.Titled(title=f"{what} is not a JSON object"))

    def answer(self, name: str = "plain", **extra: Any) -> tuple[Response, dict[str, Any]]:
        r = self.shared(name, lambda: self.send(**extra))
        return r, self.ok(r)

    def streamed(self, kind: str) -> tuple[Response, list[dict[str, Any]]]:
        r = self.shared(f"stream-{kind}", lambda: self.stream(**STREAMS[kind]))
        checks.request_succeeded(r, checks.Status(title=f"streamed POST {PATH} failed"))
        streaming.data_lines_are_json(r)
        return r, responses.typed_events(r)


@pytest.fixture(scope="module")
def api(vllm_client: Client, vllm_model: str) -> Responses:
    """The Responses API of the server, probed once: not served, the module skips."""
    api = Responses(vllm_client, vllm_model)
    try:
        probe = api.shared("plain", api.send)
    except ClientError:
        return api  # kept: each test shows it as its failure, not as a setup error
    if evidence := shapes.not_supported(probe, f"POST {PATH}"):
        not_supported("responses api", evidence)
    return api


#: Why the vllm profile lets an accepted ``store: true`` go unstored (docs/profiles.md,
#: allowance ``responses-store-off``).
STORE_ALLOWANCE = (
    "the vllm profile allows this: vLLM stores responses only with "
    "VLLM_ENABLE_RESPONSES_API_STORE=1"
)


def stored(api: Responses, profile: str) -> tuple[dict[str, Any], Response]:
    """A response created with ``store: true``, and the answer to reading it back (called
    in the test: a failure is the test's own). Storage is "not supported" only when the
    server refuses ``store: true``; one that accepts it and then cannot find the response
    fails, but for the vllm profile's allowance (vLLM drops ``store`` unless told to keep)."""
    r = api.shared("stored", lambda: api.send(store=True))
    if evidence := shapes.store_refused(r):
        not_supported("responses storage", evidence)
    body = api.ok(r)
    rid = values.field(body, "id", str, "$", r.curl)
    got = api.shared("retrieved", lambda: api.client.get(f"{PATH}/{quote(rid, safe='')}"))
    if profile == "vllm" and got.status in shapes.NOT_SERVED:
        said = untrusted.safe(f"HTTP {got.status}: {got.error_message()}", 200, one_line=True)
        pytest.skip(f"{STORE_ALLOWANCE} (GET {PATH}/{{id}} answered {said})")
    responses.retrievable(got, responses.Stored(response_id=rid, curl=got.curl))
    return body, got


# -- the Response object ----------------------------------------------------------------------
def test_a_response_matches_the_schema(api: Responses, vllm_profile: str) -> None:
    r, body = api.answer()
    schema_checks.matches(
        body, schema_checks.Schema(root="Response", profile=vllm_profile, curl=r.curl)
    )


def test_a_finished_response_has_a_final_status(api: Responses) -> None:
    r, body = api.answer()
    responses.finished(body, Context(curl=r.curl))


def test_the_output_carries_the_text(api: Responses) -> None:
    r, body = api.answer()
    responses.output_text(body, Context(curl=r.curl))


def test_usage_adds_up(api: Responses) -> None:
    r, body = api.answer()
    responses.usage_adds_up(body, Context(curl=r.curl))


def test_max_output_tokens_is_respected(api: Responses) -> None:
    r, body = api.answer("truncated", max_output_tokens=shapes.TRUNCATE_AT)
    findings = Findings()
    findings.check(
        responses.max_output_tokens_respected,
        body,
        responses.Limit(limit=shapes.TRUNCATE_AT, curl=r.curl),
    )
    findings.check(responses.finished, body, Context(curl=r.curl))
    findings.raise_any()


def test_instructions_are_honoured(api: Responses) -> None:
    _, without = api.answer()
    r, body = api.answer("instructions", instructions=shapes.INSTRUCTIONS)
    responses.instructions_honoured(
        body,
        responses.Instructions(instructions=shapes.INSTRUCTIONS, without=without, curl=r.curl),
    )


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_request_is_rejected(api: Responses, vllm_profile: str, case: str) -> None:
    edit, statuses = INVALID[case]
    r = api.client.post(PATH, shapes.create(api.model, **edit), timeout=ERROR_TIMEOUT_S)
    errors.rejected(r, errors.Invalid(statuses=statuses, what=case))
    errors.error_body(r, errors.Profile(profile=vllm_profile))


# -- the stream -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", STREAMS)
def test_stream_events_are_typed_and_match_the_schema(
    api: Responses, vllm_profile: str, kind: str
) -> None:
    r, events = api.streamed(kind)
    findings = Findings()
    findings.check(streaming.content_type_is_event_stream, r)
    findings.check(streaming.framing_is_clean, r)
    findings.check(
        responses.events_match,
        events,
        schema_checks.Schema(root="ResponseStreamEvent", profile=vllm_profile, curl=r.curl),
    )
    findings.raise_any()


@pytest.mark.parametrize("kind", STREAMS)
def test_stream_events_come_in_the_documented_order(api: Responses, kind: str) -> None:
    r, events = api.streamed(kind)
    responses.events_in_order(events, Context(curl=r.curl))


@pytest.mark.parametrize("kind", STREAMS)
def test_sequence_numbers_strictly_increase(api: Responses, kind: str) -> None:
    r, events = api.streamed(kind)
    responses.sequence_increases(events, Context(curl=r.curl))


@pytest.mark.parametrize("kind", STREAMS)
def test_streamed_deltas_add_up_to_the_final_text(api: Responses, kind: str) -> None:
    r, events = api.streamed(kind)
    responses.deltas_add_up(events, Context(curl=r.curl))


@pytest.mark.parametrize("kind", STREAMS)
def test_the_stream_ends_with_a_terminal_event(api: Responses, kind: str) -> None:
    r, events = api.streamed(kind)
    final = responses.ends_with_terminal(events, Context(curl=r.curl))
    findings = Findings()
    findings.check(responses.finished, final, Context(curl=r.curl))
    if kind == "truncated":
        findings.check(
            responses.max_output_tokens_respected,
            final,
            responses.Limit(limit=shapes.TRUNCATE_AT, curl=r.curl),
        )
    findings.raise_any()


# -- storage ----------------------------------------------------------------------------------
def test_a_stored_response_can_be_retrieved(api: Responses, vllm_profile: str) -> None:
    body, got = stored(api, vllm_profile)
    found = api.ok(got, f"GET {PATH}/{{id}}")
    schema_checks.matches(
        found, schema_checks.Schema(root="Response", profile=vllm_profile, curl=got.curl)
    )
    responses.same_stored(found, responses.Earlier(earlier=body, curl=got.curl))


def test_previous_response_id_continues_the_conversation(api: Responses, vllm_profile: str) -> None:
    first, _ = stored(api, vllm_profile)
    r = api.send(previous_response_id=first["id"])
    responses.continues(api.ok(r), responses.Earlier(earlier=first, curl=r.curl))


def test_an_unknown_previous_response_id_is_rejected(api: Responses, vllm_profile: str) -> None:
    r = api.client.post(
        PATH,
        shapes.create(api.model, previous_response_id="resp_no_such_response_x9"),
        timeout=ERROR_TIMEOUT_S,
    )
    errors.rejected(r, errors.Invalid(statuses=(400, 404), what="unknown previous_response_id"))
    errors.error_body(r, errors.Profile(profile=vllm_profile))
