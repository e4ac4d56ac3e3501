"""Command line of the engine: every option of `EngineSettings`, each also an environment
variable. Options given on the command line win over the environment."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from sage_engine.settings import BACKENDS, EngineSettings

DESCRIPTION = """\
SAGE engine server: serves one model on one port with OpenAI-compatible routes
(/health, /v1/models, /v1/embeddings, /v1/chat/completions, /v1/completions and vLLM's
/v1/load_lora_adapter + /v1/unload_lora_adapter). /health answers 503 until the model is
loaded; a model that fails to load exits non-zero with the reason in the log and in
/dev/termination-log.

Examples:
  python -m sage_engine --backend sentence-transformers --model ./all-MiniLM-L6-v2
  python -m sage_engine --backend transformers --model Qwen/Qwen2.5-0.5B-Instruct --served-model-name qwen
  SAGE_ENGINE_BACKEND=deterministic SAGE_ENGINE_MODEL=echo python -m sage_engine
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sage_engine",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in EngineSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "SAGE_ENGINE_" + name.upper()
        help_text = f"{field.description} [env {env}]"
        if name == "aliases":
            parser.add_argument(flag, "--alias", dest=name, action="append", help=help_text)
        elif name == "backend":
            parser.add_argument(flag, dest=name, choices=BACKENDS, help=help_text)
        else:
            parser.add_argument(flag, dest=name, help=help_text)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> EngineSettings:
    """Settings from the environment, overridden by `argv`; exits 2 with a clear message."""
    parser = _parser()
    namespace = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(namespace).items() if v is not None}
    if "aliases" in overrides:
        overrides["aliases"] = [a.strip() for raw in overrides["aliases"] for a in raw.split(",") if a.strip()]
    try:
        return EngineSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')} "
            f"(env SAGE_ENGINE_{'_'.join(str(p) for p in e['loc']).upper()}): {e['msg']}"
            for e in error.errors()
        )
        parser.error(problems)
