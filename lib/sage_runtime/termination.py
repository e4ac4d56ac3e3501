"""The termination message: one short text a process leaves when it exits, which Kubernetes shows
as the container's `lastState.terminated.message` (and the operator copies into status)."""

from __future__ import annotations

import logging
from pathlib import Path

from sage_runtime.pod import TERMINATION_LOG

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4000
"""Kubernetes keeps at most 4096 bytes of it; the end of a message says most."""


def write_termination_message(path: Path, message: str) -> None:
    """Writes the end of `message` to `path`. The kubelet creates /dev/termination-log before the
    container starts, so a missing file under /dev means "not in a pod": nothing is written
    there, and running on a laptop never litters /dev. Any other path (local mode names one per
    engine) is created. A file that cannot be written is logged, never fatal."""
    if path.parent == TERMINATION_LOG.parent and not path.is_file():
        return
    try:
        path.write_text(message[-MESSAGE_LIMIT:] + "\n")
    except OSError as error:
        log.debug("termination log %s is not writable: %s", path, error)
