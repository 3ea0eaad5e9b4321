"""Build the tiny random-weight Llama that ``--vllm-serve=tiny`` serves.

Nothing is downloaded: a byte-level BPE tokenizer is trained on generated text and
a 2-layer Llama gets seeded random weights. One constant residual channel puts every
token in a logit tier (see :data:`TIERS`): printable ASCII first, so free text ends by
``max_tokens`` or a stop string, never by EOS; then EOS, so that under a grammar (JSON
output, a tool call) EOS wins once the grammar allows it; then bare whitespace, so JSON
is not padded with spaces until ``max_tokens``; then ``<``, so that after one Hermes
``<tool_call>`` a second one loses to EOS. Text keeps its spaces through ``Ġword`` tokens.

Run as ``python -m pytest_vllm_conformance.target.tiny_model DIR``; torch, transformers
and tokenizers are imported only inside :func:`build`, never by the plugin.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

#: Bump when the generated files change, so cached copies are rebuilt.
TINY_MODEL_VERSION = 2
TINY_MODEL_NAME = "tiny"
_READY_MARKER = ".complete"
_VOCAB_SIZE = 1000
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: ChatML, with tools, calls and results rendered Hermes-style (as Qwen2.5 does) so a
#: tool conversation reaches the model as one; plain chats render as plain ChatML.
_CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{ '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] or '' }}{{ '\\n\\n' }}{%- endif %}"
    "{{ '# Tools\\n<tools>\\n' }}"
    "{%- for tool in tools %}{{ tool | tojson }}{{ '\\n' }}{%- endfor %}"
    "{{ '</tools>\\nCall a function as <tool_call>\\n"
    '{"name": <name>, "arguments": <args>}\\n</tool_call><|im_end|>\\n\' }}'
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and loop.first and tools %}"
    "{%- elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' }}{{ message['content'] or '' }}"
    "{{ '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}{{ message['content'] or '' }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- set f = call['function'] if call['function'] is defined else call %}"
    "{{ '\\n<tool_call>\\n{\"name\": \"' + f['name'] + '\", \"arguments\": ' }}"
    "{%- if f['arguments'] is string %}{{ f['arguments'] }}"
    "{%- else %}{{ f['arguments'] | tojson }}{%- endif %}"
    "{{ '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
#: The logit tiers on the lm_head's constant channel, highest first (see :func:`tier`).
TIERS = {"text": 0.0, "eos": -1000.0, "whitespace": -1500.0, "tag": -2000.0}
#: Openers whose closer is favoured right after them, one clean channel each (1, 2): an
#: unconstrained JSON object or array (``json_object``, free tool arguments) closes at
#: once, ``{}``, instead of writing keys until ``max_tokens``. Never a closer that is also
#: its own opener (``"``): that would repeat forever in plain text.
CLOSERS = {"{": "}", "[": "]"}
_CLOSER_BIAS = 100.0


def default_dir() -> Path:
    """Where the tiny model is cached between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-vllm-conformance" / f"tiny-llama-v{TINY_MODEL_VERSION}"


def is_built(path: Path) -> bool:
    return (path / _READY_MARKER).is_file()


def _corpus(lines: int = 4000) -> list[str]:
    """Seeded pseudo-English text: enough variety for ~1000 BPE merges."""
    rng = random.Random(0)
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "sa",
        "te",
        "vo",
        "zi",
        "pa",
        "do",
        "fe",
        "gu",
        "hi",
        "jo",
        "ba",
        "ce",
        "ly",
        "th",
        "an",
        "er",
        "in",
        "on",
        "qu",
    ]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(600)]
    words += [
        "the",
        "a",
        "of",
        "and",
        "to",
        "is",
        "in",
        "it",
        "you",
        "that",
        "hello",
        "world",
        "model",
        "server",
        "test",
        "token",
        "answer",
        "question",
        "number",
        "story",
    ]
    out = []
    for _ in range(lines):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
        out.append(
            sentence.capitalize()
            + rng.choice([".", "!", "?", ",", ";", ":"])
            + " "
            + str(rng.randint(0, 999))
        )
    return out


def build(path: Path) -> Path:
    """Write tokenizer, config and seeded weights to ``path`` (idempotent)."""
    if is_built(path):
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=2048,
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(str(path))

    vocab = tok.get_vocab_size()
    eos = tok.token_to_id("<|im_end|>")
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=tok.token_to_id("<|endoftext|>"),
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    closers = [(_token_id(tok, a), _token_id(tok, b)) for a, b in CLOSERS.items()]
    _shape_weights(model, [TIERS[tier(tok.decode([i]))] for i in range(vocab)], closers)
    model.save_pretrained(str(path), safe_serialization=True)
    # No sampling defaults: the server's and the request's parameters are the only ones.
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    (path / _READY_MARKER).write_text(str(TINY_MODEL_VERSION))
    return path


def _token_id(tok: Any, text: str) -> int:
    found = tok.token_to_id(text)
    if found is None:
        raise RuntimeError(f"the tiny tokenizer has no token {text!r}")
    return int(found)


def _printable(text: str) -> bool:
    return bool(text) and all(32 <= ord(ch) < 127 for ch in text)


def tier(text: str) -> str:
    """The logit tier of a token, from its decoded text (special tokens decode to "").

    Bare whitespace sits below EOS: a grammar that allows either (inside or after JSON)
    gets EOS, never spaces until ``max_tokens``. ``<`` opens a Hermes ``<tool_call>``;
    lowest, so it is emitted only where the grammar forces it, and a finished call
    is followed by EOS rather than a second call."""
    if text.startswith("<"):
        return "tag"
    if text and not text.strip():
        return "whitespace"
    return "text" if _printable(text) else "eos"


def _shape_weights(model: Any, bias: list[float], closers: list[tuple[int, int]]) -> None:
    """Seeded weights with wide logit gaps. Channel 0 is a constant that adds each token's
    tier bias; channel k (1, 2, ...) is 1 only on the k-th opener's embedding and lifts its
    closer. No layer reads or writes these channels, so at the last position they carry the
    current token alone (the final RMSNorm scales them, but keeps their sign)."""
    import torch as t

    clean = 1 + len(closers)
    with t.no_grad():
        m = model.model
        m.embed_tokens.weight.normal_(0.0, 1.0)
        m.embed_tokens.weight[:, :clean] = 0.0
        m.embed_tokens.weight[:, 0] = 1.0
        for layer in m.layers:
            for proj in (
                layer.self_attn.q_proj,
                layer.self_attn.k_proj,
                layer.self_attn.v_proj,
                layer.mlp.gate_proj,
                layer.mlp.up_proj,
            ):
                proj.weight.normal_(0.0, 0.09)
                proj.weight[:, :clean] = 0.0  # nothing reads the clean channels
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                proj.weight.normal_(0.0, 0.09)
                proj.weight[:clean, :] = 0.0  # nothing writes them
        head = model.lm_head.weight
        head.normal_(0.0, 0.3)
        head[:, :clean] = 0.0
        head[:, 0] = t.tensor(bias, dtype=head.dtype)
        for channel, (opener, closer) in enumerate(closers, start=1):
            m.embed_tokens.weight[opener, channel] = 1.0
            head[closer, channel] = _CLOSER_BIAS


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else default_dir()
    print(build(target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
