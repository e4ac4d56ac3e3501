"""`python -m sage_finetune`: parse the settings, check the dataset, then train (`run`).

The settings and the dataset are checked before torch is imported, so `--help`, a bad flag and a
malformed dataset line answer at once. Exit codes: see `sage_finetune.exits`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError
from pydantic_settings import CliApp

from sage_finetune.exits import EXIT_ERROR, EXIT_INVALID_INPUT, Finished, InvalidInputError
from sage_finetune.inputs import read_dataset
from sage_finetune.settings import ENV_PREFIX, FinetuneSettings
from sage_runtime.termination import write_termination_message

log = logging.getLogger("sage_finetune")


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C) finish the current step, save
    a checkpoint and exit 75. A second signal kills at once."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.warning("%s received: stopping after the current step", signal.Signals(signum).name)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


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
        dataset = read_dataset(settings)
        from sage_finetune.run import train  # noqa: PLC0415 - torch loads only once the input is good

        finished = train(settings, stop, dataset)
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        finished = Finished(EXIT_INVALID_INPUT, f"error: {error}")
    except Exception as error:
        log.exception("fine-tune failed")
        finished = Finished(EXIT_ERROR, f"unexpected error: {type(error).__name__}: {error}")
    write_termination_message(settings.termination_log, finished.summary)
    return finished.code
