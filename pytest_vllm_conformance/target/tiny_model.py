"""Build the tiny random-weight Llama that ``--vllm-serve=tiny`` serves.

Nothing is downloaded: a byte-level BPE tokenizer is trained on generated text and
a 2-layer Llama gets seeded random weights. The weights are shaped so that only
printable-ASCII tokens can ever win (special tokens and partial UTF-8 bytes get a
large negative logit through one constant residual channel), which makes every
greedy generation end by ``max_tokens`` or a stop string and never by EOS.

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
TINY_MODEL_VERSION = 1
TINY_MODEL_NAME = "tiny"
_READY_MARKER = ".complete"
_VOCAB_SIZE = 1000
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


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
    _shape_weights(model, [_printable(tok.decode([i])) for i in range(vocab)])
    model.save_pretrained(str(path), safe_serialization=True)
    # No sampling defaults: the server's and the request's parameters are the only ones.
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    (path / _READY_MARKER).write_text(str(TINY_MODEL_VERSION))
    return path


def _printable(text: str) -> bool:
    return bool(text) and all(32 <= ord(ch) < 127 for ch in text)


def _shape_weights(model: Any, allowed: list[bool]) -> None:
    """Seeded weights with wide logit gaps; channel 0 is a constant that vetoes tokens."""
    import torch as t

    with t.no_grad():
        m = model.model
        m.embed_tokens.weight.normal_(0.0, 1.0)
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
                proj.weight[:, 0] = 0.0  # nothing reads the constant channel
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                proj.weight.normal_(0.0, 0.09)
                proj.weight[0, :] = 0.0  # nothing writes it
        head = model.lm_head.weight
        head.normal_(0.0, 0.3)
        mask = t.tensor([not ok for ok in allowed])
        head[:, 0] = 0.0
        head[mask, 0] = -1000.0


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else default_dir()
    print(build(target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
