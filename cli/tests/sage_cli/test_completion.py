"""`sage completion bash`, loaded into a real bash as a user loads it, completes the commands and
options the parser has (it is generated from the parser, so a new command completes too)."""

from __future__ import annotations

import os
import subprocess

import pytest

from sage_harness.sage_script import SAGE


def complete(*words: str) -> list[str]:
    line = " ".join(f"'{word}'" for word in ("sage", *words))
    script = f'eval "$({SAGE} completion bash)"; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _sage; '
    script += 'printf "%s\\n" "${COMPREPLY[@]}"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=os.environ, check=True)
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("",), {"up", "down", "llm", "gateway", "edge", "key", "completion", "--help"}),
        (("llm", "engine", "st"), {"start", "stop"}),
        (("llm", "fine-tune", "--lora-"), {"--lora-rank", "--lora-alpha"}),
        (("up", "--det"), {"--detach"}),
        (("gateway", ""), {"start", "stop", "--help"}),
    ],
)
def test_bash_completes_commands_and_options(words: tuple[str, ...], expected: set[str]) -> None:
    assert set(complete(*words)) == expected


def test_options_before_a_command_do_not_lose_the_path() -> None:
    assert "--namespace" in complete("llm", "engine", "list", "--cluster", "--na")
