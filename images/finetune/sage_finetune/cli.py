"""`python -m sage_finetune`: read settings, load data and model, train, write the result.

Exit codes (the operator's Job pod failure policy keys on them):
  0   completed: the result and sage-finetune.json are in the output folder (or already were)
  1   unexpected error (the traceback is on stderr)
  2   invalid input: settings, dataset line, base model, or a checkpoint from a different run
  75  stopped by SIGTERM/SIGINT after saving a checkpoint; running again resumes from it
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import torch
from pydantic import ValidationError
from pydantic_settings import CliApp

from sage_api.finetune import FinetuneMethod
from sage_engine.cgroup import torch_threads
from sage_finetune.checkpoint import CheckpointMismatchError, remove_checkpoints
from sage_finetune.dataset import DatasetError, parse_dataset
from sage_finetune.encoding import encode_dataset
from sage_finetune.kube_status import InClusterCredentials, KubeStatusSink
from sage_finetune.metadata import FinetuneMetadata, read_metadata, write_metadata
from sage_finetune.modeling import (
    ModelSetupError,
    count_parameters,
    load_model,
    load_tokenizer,
    pick_device,
    save_result,
    target_modules_of,
)
from sage_finetune.progress import ProgressEvent, ProgressLine, timestamp
from sage_finetune.settings import ENV_PREFIX, FinetuneSettings
from sage_finetune.sinks import PROGRESS_FILE, FanOut, FileSink, ProgressSink, StreamSink
from sage_finetune.training import Outcome, RunResult, Trainer, run_identity

log = logging.getLogger("sage_finetune")

EXIT_COMPLETED = 0
EXIT_ERROR = 1
EXIT_INVALID_INPUT = 2
EXIT_STOPPED = 75  # EX_TEMPFAIL: "try again later", which is exactly what a resume does


class InvalidInputError(RuntimeError):
    """Input the user has to fix; reported as one line, exit code 2."""


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C) finish the current step, save
    a checkpoint and exit 75. A second signal kills at once."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.warning("%s received: stopping after the current step", signal.Signals(signum).name)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def build_sink(settings: FinetuneSettings) -> ProgressSink:
    sinks: list[ProgressSink] = [StreamSink(sys.stdout), FileSink(settings.output / PROGRESS_FILE)]
    if settings.status_target:
        credentials = InClusterCredentials.from_environment(settings.service_account_dir)
        if credentials is None:
            log.warning(
                "%sSTATUS_TARGET is set but there are no in-cluster credentials: not patching",
                ENV_PREFIX,
            )
        else:
            sinks.append(KubeStatusSink(credentials, settings.status_target, settings.status_interval_seconds))
    return FanOut(sinks)


def _completed_line(result: RunResult, epoch: float, message: str) -> ProgressLine:
    return ProgressLine(
        event=ProgressEvent.COMPLETED,
        time=timestamp(time.time()),
        step=result.step,
        total_steps=result.total_steps,
        epoch=round(epoch, 4),
        loss=None if result.final_loss is None else round(result.final_loss, 6),
        eta_seconds=0,
        percent=100,
        message=message,
    )


class Finished(NamedTuple):
    """How the process ends: its exit code and a one-line summary for the termination log."""

    code: int
    summary: str


def write_termination_message(path: Path, summary: str) -> None:
    """Kubernetes shows this file's content as the container's termination message (the
    operator copies it into the FinetuneJob's status). Written only where the kubelet created the
    file, so running locally never litters /dev."""
    if path.is_file():
        try:
            path.write_text(summary[-4000:] + "\n")
        except OSError:
            log.debug("termination log %s is not writable", path)


def _already_finished(settings: FinetuneSettings, dataset_sha256: str) -> Finished | None:
    """A completed result of this very run in the output folder (a retried pod after success);
    another run's result there is refused rather than overwritten."""
    finished = read_metadata(settings.output)
    if finished is None:
        return None
    modules = settings.target_modules if settings.target_modules is not None else finished.target_modules
    if finished.identity != run_identity(settings, dataset_sha256, modules):
        raise InvalidInputError(f"{settings.output} already holds the result of another run; use another --output")
    log.info("%s already holds this run's result; nothing to do", settings.output)
    return Finished(EXIT_COMPLETED, f"completed: {settings.output} already holds this run's result")


def _use_container_cpus() -> None:
    # torch starts one thread per host core; in a pod limited to a few CPUs that oversubscribes
    # the quota. OMP_NUM_THREADS, when set, wins (torch reads it itself).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(torch_threads())


def train(settings: FinetuneSettings, stop: threading.Event) -> Finished:
    """The whole run; returns the exit code and its summary."""
    try:
        raw = settings.dataset.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read dataset {settings.dataset}: {error}") from None
    dataset_sha256 = hashlib.sha256(raw).hexdigest()
    if (finished := _already_finished(settings, dataset_sha256)) is not None:
        return finished
    examples = parse_dataset(text.splitlines(), settings.format)
    tokenizer = load_tokenizer(settings.base_model)
    encoded = encode_dataset(examples, tokenizer, settings.format, settings.max_seq_length)
    _use_container_cpus()
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    device = pick_device()
    model = load_model(settings, device)
    trainable, total = count_parameters(model)
    target_modules = target_modules_of(model)
    identity = run_identity(settings, dataset_sha256, target_modules)
    log.info(
        "%d examples, %s on %s (%d threads), %d of %d parameters trainable",
        len(encoded), settings.method.value, device, torch.get_num_threads(), trainable, total,
    )  # fmt: skip
    sink = build_sink(settings)
    try:
        trainer = Trainer(
            settings,
            model,
            examples=encoded,
            pad_token_id=tokenizer.pad_token_id,
            identity=identity,
            sink=sink,
            stop=stop,
        )
        try:
            result = trainer.run()
        except Exception as error:
            sink.publish(ProgressLine(event=ProgressEvent.FAILED, time=timestamp(time.time()), message=str(error)))
            raise
        if result.outcome is Outcome.STOPPED:
            saved = f"checkpoint {result.checkpoint}" if result.checkpoint else "nothing to save yet"
            return Finished(EXIT_STOPPED, f"stopped at step {result.step} of {result.total_steps}; {saved}")
        save_result(model, tokenizer, settings.output)
        epochs = trainer.plan.epoch_at(result.step)
        lora = settings.method is FinetuneMethod.LORA
        metadata = FinetuneMetadata(
            base_model=settings.base_model,
            method=settings.method,
            format=settings.format,
            rank=settings.rank if lora else None,
            alpha=settings.alpha if lora else None,
            target_modules=target_modules,
            steps=result.step,
            epochs=round(epochs, 4),
            final_loss=result.final_loss,
            dataset_sha256=dataset_sha256,
            dataset_examples=len(encoded),
            trainable_parameters=trainable,
            finished_at=timestamp(time.time()),
            identity=identity,
        )
        write_metadata(settings.output, metadata)  # last: its presence means the folder is complete
        remove_checkpoints(settings.output)
        sink.publish(_completed_line(result, epochs, f"wrote {settings.output}"))
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        return Finished(EXIT_COMPLETED, f"completed: {result.step} steps, final loss {loss}, wrote {settings.output}")
    finally:
        sink.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        settings = CliApp.run(FinetuneSettings, cli_args=list(argv) if argv is not None else None)
    except ValidationError as error:
        for problem in error.errors():
            field = "_".join(str(part) for part in problem["loc"])
            flag = "--" + field.replace("_", "-")
            print(
                f"invalid setting {flag} ({ENV_PREFIX}{field.upper()}): {problem['msg']}",
                file=sys.stderr,
            )
        return EXIT_INVALID_INPUT
    try:
        finished = train(settings, stop)
    except (InvalidInputError, DatasetError, ModelSetupError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        finished = Finished(EXIT_INVALID_INPUT, f"error: {error}")
    except Exception as error:
        log.exception("fine-tune failed")
        finished = Finished(EXIT_ERROR, f"unexpected error: {type(error).__name__}: {error}")
    write_termination_message(settings.termination_log, finished.summary)
    return finished.code
