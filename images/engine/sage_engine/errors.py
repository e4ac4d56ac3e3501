"""The one error type the engine raises for anything a client did, and its OpenAI envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)  # exceptions compare and hash by identity
class EngineError(Exception):
    """An error with an HTTP status, rendered as `{"error": {message, type, param, code}}`."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.message

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> EngineError:
    return EngineError(400, message, "invalid_request_error", param, code)


def model_not_found(name: str, available: list[str]) -> EngineError:
    return EngineError(
        404,
        f"The model '{name}' does not exist on this engine; it serves: {', '.join(available)}.",
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def body_too_large(limit: int) -> EngineError:
    return EngineError(
        413,
        f"The request body is larger than this engine's limit of {limit} bytes.",
        "invalid_request_error",
        None,
        "request_too_large",
    )


def loading(reason: str) -> EngineError:
    return EngineError(503, reason, "service_unavailable_error", None, "model_loading")


def unsupported_route(model: str, route: str) -> EngineError:
    return EngineError(
        404,
        f"This engine serves {model} and has no {route} route.",
        "invalid_request_error",
        None,
        "unsupported_route",
    )
