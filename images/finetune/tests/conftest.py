"""Fixtures of the fine-tune runner tests: a trainable variant of the shared tiny random-weight
LM, a codeword dataset it cannot guess (chat and instruction format), and the environment of a
runner subprocess."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# The shared tiny LM's weights are initialised at std 0.02, so its logits span about +-1 and a
# LoRA adapter (which cannot touch the tied embedding) needs hundreds of steps before greedy
# decoding picks a taught answer. With every matrix scaled by 5 (std 0.1, still random) a few
# dozen steps do.
WEIGHT_SCALE = 5.0


@pytest.fixture(scope="session")
def trainable_tiny_lm_path(tiny_lm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny LM (same tokenizer, chat template, architecture) with wider weights."""
    import torch  # noqa: PLC0415 - heavy imports only when a test needs the model
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("trainable-tiny-lm")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm_path))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:  # embeddings and projections; norms stay at one
                parameter.mul_(WEIGHT_SCALE)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_lm_path)).save_pretrained(str(folder))
    return folder


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
    """Environment of a runner subprocess: offline, one thread (the cores are shared), the working tree's packages,
    and no SAGE_FT_* settings inherited from the caller."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_FT_")}
    return inherited | {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(autouse=True, scope="session")
def _few_torch_threads() -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
