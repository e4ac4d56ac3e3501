"""The errors the engine answers with, as the shared wire format's `WireError` (pure)."""

from __future__ import annotations

from sage_wire.errors import ENGINE_OVERLOADED, MODEL_LOADING, WireError, body_too_large, invalid_request, not_ready

__all__ = [
    "WireError",
    "admin_only",
    "bad_request",
    "body_too_large",
    "loading",
    "model_not_found",
    "queue_full",
    "shutting_down",
    "unsupported_route",
]


def bad_request(message: str, param: str | None = None, code: str | None = None) -> WireError:
    return invalid_request(message, param, code)


def model_not_found(name: str, available: list[str]) -> WireError:
    return WireError(
        404,
        f"The model '{name}' does not exist on this engine; it serves: {', '.join(available)}.",
        "model_not_found",
        "model",
    )


def loading(reason: str) -> WireError:
    return not_ready(reason, MODEL_LOADING)


def unsupported_route(model: str, route: str) -> WireError:
    return WireError(404, f"This engine serves {model} and has no {route} route.", "unsupported_route")


def admin_only() -> WireError:
    return WireError(
        401,
        "Loading and unloading adapters needs the operator's credential (Authorization: Bearer).",
        "invalid_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="sage-engine-admin"'},
    )


def shutting_down() -> WireError:
    return WireError(
        503, "The engine is shutting down and this generation outlived its drain time; retry it.", "shutting_down"
    )


def queue_full(bound: int) -> WireError:
    return not_ready(
        f"The engine is busy: {bound} generations are waiting already; retry shortly.", ENGINE_OVERLOADED, 1
    )
