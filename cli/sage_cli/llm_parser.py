"""The parser of `sage llm ...`: engines and fine-tunes, on the local control plane or a cluster."""

from __future__ import annotations

import argparse
from typing import Any

from sage_api.ports import SagePorts

RAW = argparse.RawDescriptionHelpFormatter

LLM_HELP = """Engines and fine-tunes, with one vocabulary for two targets:

  local (the default)  the control plane of `sage up` on this machine (127.0.0.1:--control-port);
                       `engine start` and `fine-tune` start one in the background when none runs
  cluster              LLMEngine and FinetuneJob objects in a kubeconfig context's namespace
                       (--cluster, or --context/--namespace/--kubeconfig, which imply it)

Every command first says which target it acts on (on stderr)."""

START_HELP = """Start an engine serving MODEL (a hub id, a local folder, or pvc://claim/path on a cluster),
or with --engine-kind finetune a fine-tune of MODEL (see `sage llm fine-tune`). An engine of
that name that is stopped starts again. Waits until the engine is ready (or failed, with the
reason) unless --no-wait.

  sage llm engine start sentence-transformers/all-MiniLM-L6-v2 --engine-kind embedding
  sage llm engine start Qwen/Qwen2.5-0.5B-Instruct --name chat
  sage llm engine start Qwen/Qwen2.5-7B-Instruct --backend vllm --gpus 1 --cluster"""

LIST_HELP = """Every engine and fine-tune of the target in one table: name, kind, model, backend,
ready/desired replicas, phase and a fine-tune's progress; a reason is shown under a row that
needs one."""

STOP_HELP = """Stop an engine: its replicas go to 0 and it is kept (`engine start` runs it again), or
with --delete it is removed. A fine-tune is stopped and deleted (its output is kept)."""

LOGS_HELP = """The logs of an engine (every replica, each line prefixed by its replica) or a fine-tune.
With -f, follow them until interrupted."""

FINETUNE_HELP = """Fine-tune BASE_MODEL on a JSONL dataset with LoRA (or --method full), then follow its
progress with a progress bar (step, loss, ETA) until it ends. The same runner runs locally and
as a cluster's FinetuneJob. With --serve ENGINE, that engine serves the result as a model named
after the fine-tune, without a restart.

  sage llm fine-tune ./tiny-lm --dataset chats.jsonl --output ./adapters/support --name support
  sage llm fine-tune Qwen/Qwen2.5-0.5B-Instruct --dataset pvc://data/chats.jsonl \\
      --output pvc://adapters/support --name support --serve chat --cluster

Locally --dataset and --output are paths on this machine; on a cluster --output is
pvc://claim/path and --dataset is pvc://, configmap://name/key, or a local file under 1 MiB
(uploaded as a ConfigMap). Ctrl-C stops following; the fine-tune goes on."""


def _target_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("target (default: local)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--local", dest="target", action="store_const", const="local",
                        help="the local control plane (the default)")  # fmt: skip
    choice.add_argument("--cluster", dest="target", action="store_const", const="cluster",
                        help="the cluster of the current kubeconfig context")  # fmt: skip
    group.add_argument("--context", help="kubeconfig context (implies --cluster; default: the current one)")
    group.add_argument("--namespace", "-n", help="namespace (implies --cluster; default: the context's)")
    group.add_argument("--kubeconfig", help="kubeconfig file (implies --cluster; default: $KUBECONFIG, ~/.kube/config)")
    group.add_argument("--control-port", type=int, default=SagePorts.control(),
                       help="the local control plane's port (default: %(default)s, env SAGE_CONTROL_PORT)")  # fmt: skip
    return options


def _add_finetune_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("fine-tune" + ("" if required else " (with --engine-kind finetune)"))
    group.add_argument("--dataset", required=required, help="JSONL training data (see above for a cluster)")
    group.add_argument("--output", required=required, help="where the adapter (or weights) are written")
    group.add_argument("--format", default="chat", choices=("chat", "instruction", "text"),
                       help="dataset format (default: %(default)s)")  # fmt: skip
    group.add_argument("--method", default="lora", choices=("lora", "full"), help="(default: %(default)s)")
    group.add_argument("--lora-rank", dest="rank", type=int, default=16, help="(default: %(default)s)")
    group.add_argument("--lora-alpha", dest="alpha", type=int, default=32, help="(default: %(default)s)")
    group.add_argument("--epochs", type=float, default=1.0, help="(default: %(default)s)")
    group.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    group.add_argument("--learning-rate", type=float, default=2e-4, help="(default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=4, help="(default: %(default)s)")
    group.add_argument("--serve", metavar="ENGINE", help="an engine that serves the result once it succeeds")


def add_llm_commands(commands: Any) -> None:
    """`sage llm engine start|list|stop|logs` and `sage llm fine-tune`."""
    target = _target_options()
    llm = commands.add_parser("llm", help="engines and fine-tunes (local control plane or cluster)",
                              description=LLM_HELP, formatter_class=RAW)  # fmt: skip
    areas = llm.add_subparsers(dest="llm_command", required=True, metavar="COMMAND")
    engine = areas.add_parser("engine", help="start, list, stop engines and read their logs",
                              description=LLM_HELP, formatter_class=RAW)  # fmt: skip
    actions = engine.add_subparsers(dest="engine_command", required=True, metavar="ACTION")

    start = actions.add_parser("start", parents=[target], help="start an engine (or a fine-tune)",
                               description=START_HELP, formatter_class=RAW)  # fmt: skip
    start.add_argument("model", metavar="MODEL")
    start.add_argument("--engine-kind", default="llm", choices=("llm", "embedding", "finetune"),
                       help="(default: %(default)s)")  # fmt: skip
    start.add_argument(
        "--backend",
        choices=("transformers", "sentence-transformers", "vllm", "deterministic"),
        help="default: vllm with --gpus, else transformers; sentence-transformers for embeddings; "
        "deterministic is the echo engine of tests",
    )
    start.add_argument("--name", help="engine name (default: derived from MODEL)")
    start.add_argument("--served-model-name", help="the model name clients ask for (default: the engine name)")
    start.add_argument("--replicas", type=int, default=1, help="(default: %(default)s; local mode runs one)")
    start.add_argument("--gpus", type=int, default=0, help="GPUs per replica (cluster; default: %(default)s)")
    start.add_argument("--no-wait", dest="wait", action="store_false", help="return once it is created")
    start.add_argument("--timeout", type=float, default=900, help="seconds to wait for ready (default: %(default)s)")
    _add_finetune_options(start, required=False)

    actions.add_parser("list", parents=[target], help="engines and fine-tunes in one table",
                       description=LIST_HELP, formatter_class=RAW)  # fmt: skip
    stop = actions.add_parser("stop", parents=[target], help="stop (or --delete) an engine or fine-tune",
                              description=STOP_HELP, formatter_class=RAW)  # fmt: skip
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--delete", action="store_true", help="remove it instead of keeping it stopped")
    logs = actions.add_parser("logs", parents=[target], help="an engine's or fine-tune's logs",
                              description=LOGS_HELP, formatter_class=RAW)  # fmt: skip
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    finetune = areas.add_parser("fine-tune", parents=[target], help="fine-tune a model and follow its progress",
                                description=FINETUNE_HELP, formatter_class=RAW)  # fmt: skip
    finetune.add_argument("model", metavar="BASE_MODEL")
    finetune.add_argument("--name", help="the fine-tune's name (default: derived from --output)")
    finetune.add_argument("--no-follow", dest="follow", action="store_false", help="return once it is started")
    _add_finetune_options(finetune, required=True)
