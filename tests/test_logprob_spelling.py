"""The logprob-spelling check on the answer shapes real engines send, and on hostile ones.

vLLM 0.32 decodes each logprob token alone (detokenizer_utils.convert_ids_list_to_tokens)
and repairs byte-fallback pieces (v1/engine/logprobs.py: a partial character becomes "",
the token that completes it carries it), or leaves U+FFFD where it cannot; older versions
and other engines render such tokens as ``bytes:...``. Its token list includes an
end-of-text token that the text leaves out. llama.cpp sends chat-style logprobs on
/v1/completions.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_vllm_conformance.checks.logprobs import Spelling, tokens_spell_text
from pytest_vllm_conformance.checks.registry import Context
from pytest_vllm_conformance.failures import CheckFailure


def completion(text: str, tokens: list[Any], finish: str = "length") -> dict[str, Any]:
    return {
        "choices": [
            {
                "index": 0,
                "text": text,
                "finish_reason": finish,
                "logprobs": {"tokens": tokens, "token_logprobs": [-0.1] * len(tokens)},
            }
        ]
    }


def chat_style(tokens: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []}
            for t in tokens
        ]
    }


def chat(content: str | None, tokens: list[str], **message: Any) -> dict[str, Any]:
    return {
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "logprobs": chat_style(tokens),
                "message": {"role": "assistant", "content": content, **message},
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "spelling"),
    [
        (completion(" a b", [" a", " b"]), Spelling(2, 0)),
        (completion("é b", ["", "é", " b"]), Spelling(3, 0)),  # vLLM's repaired byte fallback
        (completion("é b", ["\ufffd", "\ufffd", " b"]), Spelling(3, 2)),  # not repaired
        (completion("\u2019s", ["bytes:\\xe2\\x80", "bytes:\\x99", "s"]), Spelling(3, 2)),
        (completion(" a b", [" a", " b", "</s>"], finish="stop"), Spelling(3, 0)),  # end of text
        (completion(" a b", [" a", " b", "."], finish="stop"), Spelling(3, 0)),  # a stop string
        (chat(" a b", [" a", " b"]), Spelling(2, 0)),
        (chat(None, []), Spelling(0, 0)),
        (
            {
                "choices": [
                    {
                        "index": 0,
                        "text": " a b",
                        "finish_reason": "length",  # llama.cpp
                        "logprobs": chat_style([" a", " b"]),
                    }
                ]
            },
            Spelling(2, 0),
        ),
        (chat(" b", [" <think>", " a", " </think>", " b"], reasoning_content=" a"), Spelling(0, 0)),
        ({"choices": [{"index": 0, "text": " a", "logprobs": None}]}, Spelling(0, 0)),
    ],
)
def test_tokens_that_spell_the_text_pass(body: dict[str, Any], spelling: Spelling) -> None:
    assert tokens_spell_text(body) == spelling


@pytest.mark.parametrize(
    ("body", "received"),
    [
        (completion(" a b", [" A", " b"]), "token 0 ' A' where the text has ' a b'"),
        (completion(" a b", [" a"]), "token 1 <no more tokens> where the text has ' b'"),
        (completion(" a", [" a", " b"]), "token 1 ' b' where the text has ''"),
        (completion(" a b", [" a", " b", "</s>"]), "token 2 '</s>' where the text has ''"),
        (completion(" a b c", [" a", " x", " c", "</s>"], finish="stop"), "token 1 ' x'"),
        (chat(" a b", [" a", " B"]), "token 1 ' B' where the text has ' b'"),
    ],
)
def test_tokens_that_misspell_the_text_fail(body: dict[str, Any], received: str) -> None:
    with pytest.raises(CheckFailure) as info:
        tokens_spell_text(body, Context(curl="curl x"))
    assert info.value.title == "Logprob tokens do not spell the text"
    assert info.value.received.startswith(received) and info.value.curl == "curl x"


@pytest.mark.parametrize(
    ("body", "title"),
    [
        ({"choices": "nope"}, "Response has no choices"),
        ({"choices": [7]}, "Response has no choices"),
        (completion(" a", [" a", 7]), "logprobs malformed"),
        ({"choices": [{"text": " a", "logprobs": [1, 2]}]}, "logprobs malformed"),
        ({"choices": [{"text": 5, "logprobs": {"tokens": []}}]}, "Text malformed"),
    ],
)
def test_malformed_logprobs_are_titled_failures(body: dict[str, Any], title: str) -> None:
    with pytest.raises(CheckFailure) as info:
        tokens_spell_text(body)
    assert info.value.title == title


def test_a_flood_of_byte_fragments_is_bounded() -> None:
    """Each unspellable token widens the search; past a bound they are counted, not searched."""
    started = time.monotonic()
    body = completion("x" * 60_000, ["\ufffd"] * 4_000)
    assert tokens_spell_text(body) == Spelling(4_000, 4_000)
    assert time.monotonic() - started < 20


# issue 14 review: two unspellable tail tokens end an answer only within their reach
def test_two_unspellable_tail_tokens_do_not_cover_the_rest_of_the_text() -> None:
    text = " a b" + " c" * 40  # the tokens spell " a b"; 80 characters are left
    body = completion(text, [" a", " b", "bytes:\\xe2", "bytes:\\x99"], finish="stop")
    with pytest.raises(CheckFailure) as info:
        tokens_spell_text(body)
    assert info.value.title == "Logprob tokens do not spell the text"
    near = completion(
        " a b\u2019", [" a", " b", "bytes:\\xe2\\x80", "bytes:\\x99"], finish="stop"
    )  # the text ends within their reach: still passes
    assert tokens_spell_text(near) == Spelling(4, 2)
