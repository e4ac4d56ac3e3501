"""The checks that need no ML framework, done before torch is imported so a bad dataset or an
already finished run is answered in a second: reading and parsing the dataset, and recognising
this run's result in the output folder."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sage_finetune.dataset import NumberedExample, parse_dataset
from sage_finetune.exits import InvalidInputError
from sage_finetune.metadata import read_metadata, run_identity
from sage_finetune.settings import FinetuneSettings

log = logging.getLogger("sage_finetune")


@dataclass(frozen=True)
class DatasetFile:
    """The parsed dataset and the SHA-256 of its bytes (part of the run's identity)."""

    sha256: str
    examples: list[NumberedExample]


def read_dataset(settings: FinetuneSettings) -> DatasetFile:
    try:
        raw = settings.dataset.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read dataset {settings.dataset}: {error}") from None
    return DatasetFile(hashlib.sha256(raw).hexdigest(), parse_dataset(text.splitlines(), settings.dataset_format))


def already_finished(settings: FinetuneSettings, dataset: DatasetFile) -> str | None:
    """A summary when the output folder holds this very run's result (a pod retried after
    success); another run's result there is refused rather than overwritten."""
    finished = read_metadata(settings.output)
    if finished is None:
        return None
    modules = settings.target_modules if settings.target_modules is not None else finished.target_modules
    if finished.identity != run_identity(settings, dataset.sha256, modules):
        raise InvalidInputError(f"{settings.output} already holds the result of another run; use another --output")
    log.info("%s already holds this run's result; nothing to do", settings.output)
    return f"completed: {settings.output} already holds this run's result"
