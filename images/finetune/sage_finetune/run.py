"""The training run itself: tokenizer, model, trainer, result. Imported by `cli` only after the
settings and the dataset were checked, so those errors never wait for torch to load."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time

import torch

from sage_api.finetune import FinetuneMethod
from sage_finetune.checkpoint import remove_checkpoints
from sage_finetune.encoding import encode_dataset
from sage_finetune.exits import EXIT_COMPLETED, EXIT_STOPPED, Finished
from sage_finetune.inputs import DatasetFile, already_finished, read_dataset
from sage_finetune.kube_status import KubeStatusSink, in_cluster_config
from sage_finetune.metadata import FinetuneMetadata, run_identity, write_metadata
from sage_finetune.modeling import (
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
from sage_finetune.training import Outcome, RunResult, Trainer
from sage_runtime.cgroup import torch_threads

log = logging.getLogger("sage_finetune")


def build_sink(settings: FinetuneSettings) -> ProgressSink:
    sinks: list[ProgressSink] = [StreamSink(sys.stdout), FileSink(settings.output / PROGRESS_FILE)]
    if settings.status_target:
        config = in_cluster_config(settings.service_account_dir)
        if config is None:
            log.warning(
                "%sSTATUS_TARGET is set but there are no in-cluster credentials: not patching",
                ENV_PREFIX,
            )
        else:
            sinks.append(KubeStatusSink(config, settings.status_target, settings.status_interval_seconds))
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


def _use_container_cpus() -> None:
    # torch starts one thread per host core; in a pod limited to a few CPUs that oversubscribes
    # the quota. OMP_NUM_THREADS, when set, wins (torch reads it itself).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(torch_threads())


def train(settings: FinetuneSettings, stop: threading.Event, dataset: DatasetFile | None = None) -> Finished:
    """The whole run (dataset read here unless given); returns the exit code and its summary."""
    dataset = dataset or read_dataset(settings)
    if (summary := already_finished(settings, dataset)) is not None:
        return Finished(EXIT_COMPLETED, summary)
    dataset_sha256 = dataset.sha256
    tokenizer = load_tokenizer(settings.base_model)
    encoded = encode_dataset(dataset.examples, tokenizer, settings.dataset_format, settings.max_seq_length)
    if truncated := sum(example.truncated for example in encoded):
        log.warning("%d of %d examples are longer than --max-seq-length %d tokens and were truncated",
                    truncated, len(encoded), settings.max_seq_length)  # fmt: skip
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
        len(encoded), settings.method, device, torch.get_num_threads(), trainable, total,
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
        lora = settings.finetune_method is FinetuneMethod.LORA
        metadata = FinetuneMetadata(
            base_model=settings.base_model,
            method=settings.finetune_method,
            format=settings.dataset_format,
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
