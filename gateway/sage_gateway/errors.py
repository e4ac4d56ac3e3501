"""The gateway's errors, in the shared wire format (pure): what a client gets when its model is
unknown or not ready, or when a replica fails, and upstream error answers made into envelopes."""

from __future__ import annotations

from sage_wire.envelopes import error_of
from sage_wire.errors import WireError, invalid_request, not_ready

__all__ = ["WireError", "invalid_request", "model_not_found", "no_ready_replica", "upstream_error", "upstream_failed"]


LISTED_MODELS = 20
"""Names a 404 lists at most: past that, a count (a gateway may route for a thousand engines)."""


def model_not_found(model: str, known: list[str]) -> WireError:
    listing = ", ".join(known[:LISTED_MODELS]) if known else "none (no engine is registered)"
    if len(known) > LISTED_MODELS:
        listing += f" and {len(known) - LISTED_MODELS} more (GET /v1/models lists them)"
    return WireError(
        404, f"The model '{model}' does not exist. Available models: {listing}.", "model_not_found", "model"
    )


def no_ready_replica(model: str, retry_after: int) -> WireError:
    message = f"The model '{model}' exists but has no ready replica right now; retry in {retry_after}s."
    return not_ready(message, "model_not_ready", retry_after, "model")


def scale_up_timed_out(model: str, waited: float, retry_after: int) -> WireError:
    message = (
        f"The model '{model}' is starting from zero replicas and none was ready within {waited:.0f}s; "
        f"retry in {retry_after}s."
    )
    return not_ready(message, "model_not_ready", retry_after, "model")


def paused_for_finetune(model: str, job: str, retry_after: int) -> WireError:
    message = f"The model '{model}' is paused while the FinetuneJob '{job}' runs; it returns when the job ends."
    return not_ready(message, "model_paused", retry_after, "model")


def upstream_failed(model: str, reason: str) -> WireError:
    return WireError(502, f"Every replica of '{model}' failed: {reason}", "upstream_error")


def upstream_timeout(model: str, reason: str) -> WireError:
    """504: the replica took the request and did not answer in time (it may have started it, so
    it is not retried elsewhere)."""
    return WireError(504, f"A replica of '{model}' did not answer in time: {reason}", "upstream_timeout")


def upstream_error(status: int, content: bytes, replica: str) -> WireError:
    """An upstream error answer as a WireError: its own envelope's fields when it sent one, else a
    502 (server errors) or its status (client errors) quoting the start of its body."""
    error = error_of(content)
    if error is not None:
        code, param = error.get("code"), error.get("param")
        return WireError(
            status, str(error["message"]), str(code) if code else "upstream_error", str(param) if param else None
        )
    snippet = content[:300].decode(errors="replace").strip() or "(empty body)"
    return WireError(502 if status >= 500 else status, f"{replica} answered {status}: {snippet}", "upstream_error")
