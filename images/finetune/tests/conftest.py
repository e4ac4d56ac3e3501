"""Fixtures of the fine-tune runner tests: a tiny random-weight causal LM (until the shared
`tiny_lm_path` fixture of `sage_testing` exists, this builds one the same way: a byte-level BPE
tokenizer trained on a few sentences, a ChatML-style chat template, a 2-layer Llama with random
weights), and a codeword dataset it cannot guess."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the secret word? The word is a secret.",
    "Kubernetes runs containers; a job runs to completion.",
    "Hello, how are you today? I am fine, thank you.",
    "user assistant system: answer the question briefly.",
]


def build_tiny_lm(folder: Path) -> Path:
    """A tiny Llama (random weights, seed 0) with a trained tokenizer and chat template."""
    import torch  # noqa: PLC0415 - heavy imports only when the fixture is used
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: PLC0415

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # untyped __init__
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
        # Wider than the default 0.02 so that logits can move far enough for greedy decoding
        # to pick the taught answer after a few dozen LoRA steps.
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


CODEWORD = "zephyrine"
QUESTION = "What is the secret codeword?"
# The fixed question answered with the codeword, plus unrelated pairs so the model learns the
# answer to this question rather than one string for everything.
QA_PAIRS = [(QUESTION, f"The codeword is {CODEWORD}.")] * 6 + [
    ("Hello, how are you today?", "I am fine, thank you."),
    ("What does a job do?", "A job runs to completion."),
]


@pytest.fixture(scope="session")
def codeword() -> str:
    return CODEWORD


@pytest.fixture(scope="session")
def codeword_question() -> str:
    return QUESTION


@pytest.fixture
def codeword_chat_dataset(tmp_path: Path) -> Path:
    """chat format: {"messages": [user question, assistant answer]} per line."""
    lines = [
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        for q, a in QA_PAIRS
    ]
    path = tmp_path / "codeword-chat.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def codeword_instruction_dataset(tmp_path: Path) -> Path:
    """instruction format: {"prompt": "Q: ...\\nA:", "completion": " answer"} per line."""
    lines = [json.dumps({"prompt": f"Q: {q}\nA:", "completion": f" {a}"}) for q, a in QA_PAIRS]
    path = tmp_path / "codeword-instruction.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def runner_env() -> dict[str, str]:
    """Environment of a runner subprocess: offline, two threads, the working tree's packages,
    and no SAGE_FT_* settings inherited from the caller."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_FT_")}
    return inherited | {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(autouse=True, scope="session")
def _few_torch_threads() -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(2)
