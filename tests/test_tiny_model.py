"""The generated tiny model finishes JSON and tool calls: its logit tiers and closers are in
place, and its chat template renders tool conversations Hermes-style (issue 17).

Builds the model once into a temporary folder (a few seconds, torch and transformers only);
skipped where they are not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_conformance.target import tiny_model
from pytest_vllm_conformance.target.tiny_model import CLOSERS, TIERS, tier


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "text"),
        (" word", "text"),
        ("{", "text"),
        ("}", "text"),
        ("42", "text"),
        ("", "eos"),
        ("\x80", "eos"),
        ("é", "eos"),
        (" ", "whitespace"),
        ("\n", "whitespace"),
        ("\t", "whitespace"),
        ("\r", "whitespace"),
        ("<", "tag"),
        ("</", "tag"),
    ],
)
def test_each_token_text_has_its_tier(text: str, expected: str) -> None:
    assert tier(text) == expected


def test_the_tiers_are_ordered_text_eos_whitespace_tag() -> None:
    """EOS must beat whitespace (JSON ends instead of padding) and ``<`` (a finished tool
    call is not followed by a second one); text must beat EOS (free text never stops)."""
    assert TIERS["text"] > TIERS["eos"] > TIERS["whitespace"] > TIERS["tag"]


def test_the_cache_folder_is_versioned() -> None:
    assert tiny_model.default_dir().name == f"tiny-llama-v{tiny_model.TINY_MODEL_VERSION}"
    assert tiny_model.TINY_MODEL_VERSION >= 2  # v1 padded JSON with spaces until max_tokens


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    """(torch, tokenizer, model) for a freshly built tiny model."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tiny_model.build(tmp_path_factory.mktemp("tiny") / "model")
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path))
    model.eval()
    yield torch, tok, model


def _next_logits(built: tuple[Any, Any, Any], prompt: str, *after: str) -> Any:
    torch, tok, model = built
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    ids += [tok.convert_tokens_to_ids(t) for t in after]
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_the_lm_head_carries_the_tiers(built: tuple[Any, Any, Any]) -> None:
    _, tok, model = built
    column = model.lm_head.weight[:, 0].tolist()
    for i, bias in enumerate(column):
        text = tok.decode([i], skip_special_tokens=True)  # the builder decodes them to ""
        assert bias == TIERS[tier(text)], (i, text)
    ids = {
        name: tok.convert_tokens_to_ids(t)
        for name, t in (("eos", "<|im_end|>"), ("space", "Ġ"), ("newline", "Ċ"), ("lt", "<"))
    }
    assert column[ids["eos"]] == TIERS["eos"]
    assert column[ids["space"]] == column[ids["newline"]] == TIERS["whitespace"]
    assert column[ids["lt"]] == TIERS["tag"]
    # text keeps its spaces through "Ġword" tokens, which stay in the text tier
    assert (
        sum(
            1
            for i, b in enumerate(column)
            if b == TIERS["text"] and tok.decode([i]).startswith(" ")
        )
        > 100
    )


@pytest.mark.parametrize("prompt", ["Hello there", "Tell me a story", "What is 2+2?"])
def test_greedy_choices_finish_json_and_calls(built: tuple[Any, Any, Any], prompt: str) -> None:
    _, tok, _ = built
    logits = _next_logits(built, prompt)
    best = int(logits.argmax())
    assert tier(tok.decode([best])) == "text"  # free text never ends by EOS
    eos, space, lt = (tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "Ġ", "<"))
    assert logits[eos] > logits[space] > logits[lt]  # under a grammar: EOS, never padding
    for opener, closer in CLOSERS.items():
        after = _next_logits(built, prompt, opener)
        assert tok.decode([int(after.argmax())]) == closer  # {} and [] close at once


def test_plain_text_still_varies_and_has_spaces(built: tuple[Any, Any, Any]) -> None:
    torch, tok, model = built
    answers = set()
    for prompt in ("Hello there", "Tell me a story", "What is 2+2?"):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
        )
        ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
        out = model.generate(ids, max_new_tokens=24, do_sample=False)
        text = tok.decode(out[0][ids.shape[1] :])
        assert text.count(" ") >= 3 and "<|im_end|>" not in text
        answers.add(text)
    assert len(answers) == 3


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_the_template_renders_tool_conversations_hermes_style(built: tuple[Any, Any, Any]) -> None:
    _, tok, _ = built
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "paris"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "20 C"},
    ]
    text = tok.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n<tools>\n{")
    assert text.count("<|im_start|>system") == 1
    assert (
        '<|im_start|>assistant\n\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "paris"}}\n</tool_call><|im_end|>\n'
    ) in text
    assert "<|im_start|>user\n<tool_response>\n20 C\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    # arguments given as a JSON string (as some clients send them) are written as they are
    messages[2]["tool_calls"][0]["function"]["arguments"] = '{"city": "rome"}'
    text = tok.apply_chat_template(messages, tools=TOOLS, tokenize=False)
    assert '"arguments": {"city": "rome"}}' in text


def test_a_plain_chat_renders_as_plain_chatml(built: tuple[Any, Any, Any]) -> None:
    _, tok, _ = built
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_the_built_folder_is_marked_complete(built: tuple[Any, Any, Any]) -> None:
    _, tok, _ = built
    assert tiny_model.is_built(Path(tok.name_or_path))
