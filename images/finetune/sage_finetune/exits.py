"""How a run ends: exit codes (the operator's Job pod failure policy keys on them), the one-line
summary for the termination log, and the error every input problem raises.

  0   completed: the result and sage-finetune.json are in the output folder (or already were)
  1   unexpected error (the traceback is on stderr)
  2   invalid input: settings, dataset line, base model, LoRA targets, or a checkpoint or result
      of a different run in the output folder; a retry cannot help
  75  stopped by SIGTERM/SIGINT after saving a checkpoint; running again resumes from it
"""

from __future__ import annotations

from typing import NamedTuple

EXIT_COMPLETED = 0
EXIT_ERROR = 1
EXIT_INVALID_INPUT = 2
EXIT_STOPPED = 75  # EX_TEMPFAIL: "try again later", which is exactly what a resume does


class InvalidInputError(Exception):
    """Input the user has to fix; reported as one line, exit code 2."""


class Finished(NamedTuple):
    """How the process ends: its exit code and a one-line summary for the termination log."""

    code: int
    summary: str
