"""/v1/embeddings: inputs of every kind, order, dimensions, encodings, usage, errors."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_conformance import checks
from pytest_vllm_conformance.checks import embeddings, errors
from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.checks.semantics import Count
from pytest_vllm_conformance.client import Client, Response
from pytest_vllm_conformance.failures import Findings
from pytest_vllm_conformance.target.discovery import Target

pytestmark = pytest.mark.embeddings
TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A recipe for soup."]


class Embedder:
    """Sends /v1/embeddings to the embedding server and model of the run."""

    def __init__(self, client: Client, url: str, model: str) -> None:
        self.client, self.url, self.model = client, url, model

    def send(self, inp: Any, **extra: Any) -> Response:
        return self.client.post(
            "/v1/embeddings", {"model": self.model, "input": inp, **extra}, base_url=self.url
        )

    def ok(self, inp: Any, **extra: Any) -> tuple[Response, dict[str, Any]]:
        r = self.send(inp, **extra)
        checks.request_succeeded(r, checks.Status(title="POST /v1/embeddings failed"))
        return r, checks.json_object(r, checks.Titled(title="/v1/embeddings is not a JSON object"))


@pytest.fixture(scope="module")
def embedder(vllm_client: Client, vllm_target: Target) -> Embedder:
    if not vllm_target.embedding_model:
        pytest.skip(
            "no embedding model: pass --vllm-embedding-model (and --vllm-embedding-url "
            "when another server serves it)"
        )
    return Embedder(
        vllm_client, vllm_target.embedding_url or vllm_target.base_url, vllm_target.embedding_model
    )


def test_a_single_input_gives_one_valid_vector(embedder: Embedder, vllm_profile: str) -> None:
    r, body = embedder.ok(TEXTS[0])
    findings = Findings()
    findings.check(
        schema_checks.matches,
        body,
        schema_checks.Schema(root="CreateEmbeddingResponse", profile=vllm_profile, curl=r.curl),
    )
    findings.check(embeddings.vectors, body, Count(n=1, curl=r.curl))
    findings.check(embeddings.usage_counted, body, Context(curl=r.curl))
    findings.raise_any()


def test_a_batch_keeps_order_and_index(embedder: Embedder) -> None:
    r, body = embedder.ok(TEXTS)
    batch = embeddings.vectors(body, Count(n=len(TEXTS), curl=r.curl))
    embeddings.one_dimension(batch, Context(curl=r.curl))
    for text, vec in zip(TEXTS, batch, strict=True):
        alone = embeddings.vectors(embedder.ok(text)[1], Count(n=1))[0]
        embeddings.same_vector(
            vec, embeddings.Same(other=alone, what=f"Batched embedding of {text!r}", curl=r.curl)
        )


def test_token_ids_are_accepted(embedder: Embedder) -> None:
    r, body = embedder.ok([100, 101, 102, 103])
    embeddings.one_dimension(
        embeddings.vectors(body, Count(n=1, curl=r.curl))
        + embeddings.vectors(embedder.ok(TEXTS[0])[1], Count(n=1)),
        Context(curl=r.curl),
    )


def test_base64_decodes_to_the_float_vector(embedder: Embedder) -> None:
    as_float = embeddings.vectors(embedder.ok(TEXTS[1], encoding_format="float")[1], Count(n=1))[0]
    r, body = embedder.ok(TEXTS[1], encoding_format="base64")
    as_b64 = embeddings.vectors(body, Count(n=1, curl=r.curl))[0]
    embeddings.same_vector(
        as_b64,
        embeddings.Same(other=as_float, what="The base64 embedding", tolerance=1e-6, curl=r.curl),
    )


BAD_INPUTS = {"empty-list": [], "a-number": 42, "an-object": {"text": "hi"}}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_rejected(embedder: Embedder, vllm_profile: str, case: str) -> None:
    r = embedder.send(BAD_INPUTS[case])
    errors.rejected(r, errors.Invalid(what=case))
    errors.error_body(r, errors.Profile(profile=vllm_profile))
