"""vLLM's own `vllm serve` argument parser, without a GPU: whether the pinned vLLM release accepts
a command line, and the parser's words when it does not.

The parser runs in the vLLM environment that `e2e/vllm/vllm-env.sh` builds (once per machine,
keyed by the release `images/vllm/Dockerfile` pins), in one child process for all command lines:
importing vLLM takes seconds. The child sets the CPU platform first (building the parser otherwise
fails with "Failed to infer device type" on a machine without a GPU), builds the `vllm` command's
parser with its `serve` subcommand as `vllm.entrypoints.cli.main` does, parses each command line
and runs the subcommand's own checks (`ServeSubcommand.validate`), which is everything `vllm serve`
does before it loads a model.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sage_harness.repo import REPO_ROOT

ENV_SCRIPT = REPO_ROOT / "e2e" / "vllm" / "vllm-env.sh"
# The first run on a machine installs vLLM and its CUDA PyTorch (about 9 GB).
ENV_BUILD_TIMEOUT_SECONDS = 3600.0
PARSE_TIMEOUT_SECONDS = 300.0
# Quiet, offline, and no usage reports from the child.
CHILD_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
}

# Runs in the vLLM environment: python -c PROGRAM <command lines JSON file> <verdicts JSON file>.
PROGRAM = r"""
import contextlib, io, json, sys

import vllm
import vllm.platforms
from vllm.platforms.cpu import CpuPlatform

vllm.platforms._current_platform = CpuPlatform()

try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:  # releases before the utils package was split
    from vllm.utils import FlexibleArgumentParser
from vllm.entrypoints.cli.serve import ServeSubcommand


def parser():
    top = FlexibleArgumentParser(prog="vllm")
    subcommands = top.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subcommands).set_defaults(dispatch_function=serve.cmd)
    return top, serve


def verdict(argv):
    if list(argv[:2]) != ["vllm", "serve"]:
        return {"accepted": False, "error": "not a `vllm serve` command line"}
    top, serve = parser()  # a fresh parser each time: parsing may leave state on it
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = top.parse_args(["serve", *argv[2:]])
            serve.validate(args)
    except SystemExit as exit:  # argparse reports on stderr, then exits
        if exit.code in (0, None):
            return {"accepted": False, "error": "the parser exited without parsing (--help?)"}
        return {"accepted": False, "error": err.getvalue().strip() or f"exit status {exit.code}"}
    except Exception as error:  # the subcommand's own checks raise
        return {"accepted": False, "error": f"{type(error).__name__}: {error}"}
    return {"accepted": True, "error": "", "model": getattr(args, "model_tag", None)}


with open(sys.argv[1]) as source:
    commands = json.load(source)
result = {"vllm": vllm.__version__, "verdicts": [verdict(argv) for argv in commands]}
with open(sys.argv[2], "w") as sink:
    json.dump(result, sink)
"""


class VllmEnvError(RuntimeError):
    """The vLLM environment could not be built, or its parser could not be run; says why."""


@dataclass(frozen=True)
class Verdict:
    """What the `vllm serve` parser of one vLLM release says about one command line."""

    command: tuple[str, ...]
    accepted: bool
    error: str
    """The parser's message (argparse's usage and error lines, or the check that raised) when refused."""
    vllm_version: str


def vllm_environment(*, timeout: float = ENV_BUILD_TIMEOUT_SECONDS, log: Path | None = None) -> Path:
    """The folder of the vLLM environment, built by `e2e/vllm/vllm-env.sh` if this machine has none
    yet. The script's progress goes to `log` (else its end is in the error). VllmEnvError when the
    environment cannot be built."""
    if not ENV_SCRIPT.exists():
        msg = f"{ENV_SCRIPT} is missing"
        raise VllmEnvError(msg)
    with tempfile.TemporaryDirectory(prefix="sage-vllm-env-") as work:
        progress = log or Path(work) / "vllm-env.log"
        try:
            with progress.open("wb") as sink:
                done = subprocess.run(
                    ["bash", str(ENV_SCRIPT)], stdout=subprocess.PIPE, stderr=sink, timeout=timeout, check=False
                )
        except subprocess.TimeoutExpired:
            msg = f"{ENV_SCRIPT.name} did not finish within {timeout:.0f}s (log: {progress})"
            raise VllmEnvError(msg) from None
        if done.returncode != 0:
            tail = progress.read_bytes()[-4000:].decode(errors="replace")
            msg = f"{ENV_SCRIPT.name} failed with exit status {done.returncode}: {tail}"
            raise VllmEnvError(msg)
    lines = done.stdout.decode().strip().splitlines()
    folder = Path(lines[-1]) if lines else Path()
    if not (folder / "bin" / "python").exists():
        msg = f"{ENV_SCRIPT.name} printed {folder}, which holds no bin/python"
        raise VllmEnvError(msg)
    return folder


def check_command_lines(
    venv: Path, commands: Sequence[Sequence[str]], *, timeout: float = PARSE_TIMEOUT_SECONDS
) -> list[Verdict]:
    """The verdict of vLLM's `vllm serve` parser, in the environment `venv`, on each command line
    (`["vllm", "serve", <model>, <flags>...]`, as a container command), in order."""
    with tempfile.TemporaryDirectory(prefix="sage-vllm-args-") as work:
        source, sink = Path(work) / "commands.json", Path(work) / "verdicts.json"
        source.write_text(json.dumps([list(command) for command in commands]))
        try:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-c", PROGRAM, str(source), str(sink)],
                capture_output=True,
                env={**os.environ, **CHILD_ENV},
                cwd=work,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            msg = f"vLLM's parser did not answer within {timeout:.0f}s"
            raise VllmEnvError(msg) from None
        if done.returncode != 0 or not sink.exists():
            output = (done.stdout + done.stderr)[-4000:].decode(errors="replace")
            msg = f"the vLLM parser program failed (exit status {done.returncode}): {output}"
            raise VllmEnvError(msg)
        result = json.loads(sink.read_text())
    return [
        Verdict(tuple(command), bool(answer["accepted"]), str(answer["error"]), str(result["vllm"]))
        for command, answer in zip(commands, result["verdicts"], strict=True)
    ]
