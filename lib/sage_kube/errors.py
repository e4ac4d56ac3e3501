"""API errors as exceptions carrying the server's own message."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}

    def has_cause(self, cause: str) -> bool:
        """Whether the server's Status names `cause` among its details (e.g. NamespaceTerminating)."""
        causes = (self.body.get("details") or {}).get("causes") or []
        return any(isinstance(c, dict) and c.get("type") == cause for c in causes)

    @property
    def namespace_terminating(self) -> bool:
        """Nothing new can be made in a namespace being deleted; what is in it goes with it."""
        return self.has_cause("NamespaceTerminating")


class Unreachable(Exception):
    """No answer from the API server: it could not be reached, the connection broke, or it
    stayed silent past the timeout."""


class NotFound(ApiError):
    """404: the object does not exist."""


class Conflict(ApiError):
    """409: already exists, or a resourceVersion conflict."""


class Gone(ApiError):
    """410: the watch's resourceVersion is too old; relist."""


def error_for(status: int, body: dict[str, Any] | str) -> ApiError:
    if isinstance(body, dict):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or body)
        payload: dict[str, Any] | None = body
    else:
        reason, message, payload = "", body[:2000], None
    kind = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return kind(status, reason, message, payload)
