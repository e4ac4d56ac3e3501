"""A tiny causal LM for tests, made from scratch: a byte-level BPE tokenizer trained here, a
2-layer Llama with random weights, and a chat template. Saved once into the user cache and
reused; a lock file keeps parallel test runs from building it twice.

The model talks nonsense (ASCII only: special and non-ASCII byte tokens are silenced); tests
check plumbing (templates, streaming, stops, usage, adapters), never quality.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

from sage_api.paths import cache_dir

VERSION = "v3"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules pods onto nodes; an operator reconciles custom resources.",
    "SAGE serves language models and embedding models behind one OpenAI-compatible gateway.",
    "Hello, how are you today? I am fine, thank you very much.",
    "A tiny model with random weights says nothing useful, but it says it quickly.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation ! ? , . ; : ' \" ( ) [ ] { } - _ / \\ @ # $ % ^ & * + =",
]


def default_folder() -> Path:
    return cache_dir() / "test-models" / f"tiny-llama-{VERSION}"


def build(folder: Path) -> None:
    """Write tokenizer + model + chat template into `folder` (which must not exist yet)."""
    # Imported here so loading the pytest plugin stays fast for tests that need no model.
    import torch  # noqa: PLC0415
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: PLC0415

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = cast(Any, PreTrainedTokenizerFast)(
        tokenizer_object=tokenizer,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        model_max_length=256,
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.convert_tokens_to_ids("<|end|>"),
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Silence special and non-ASCII byte tokens (zero rows of the tied embedding give them logit
    # 0 while real tokens spread around it), so greedy output is readable text, not empty strings.
    special_ids = set(fast.convert_tokens_to_ids(SPECIAL_TOKENS))
    with torch.no_grad():
        for token_id in range(len(fast)):
            piece = fast.decode([token_id])
            if token_id in special_ids or not (piece and piece.isascii() and piece.isprintable()):
                model.model.embed_tokens.weight[token_id].zero_()
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(folder)
    fast.save_pretrained(folder)


def ensure(folder: Path | None = None) -> Path:
    """The tiny model's folder, built on first use."""
    target = folder or default_folder()
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                build(staging / "model")
                (staging / "model").rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target
