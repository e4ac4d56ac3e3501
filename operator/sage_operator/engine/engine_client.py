"""Talks to engine pods (vLLM or SAGE's engine server) over their HTTP API: which models and
adapters a pod serves, and loading a LoRA adapter at run time (vLLM's /v1/load_lora_adapter)."""

from __future__ import annotations

from typing import Any

import httpx


class EngineUnavailable(Exception):
    """The pod did not answer, or refused the request."""


class EngineClient:
    def __init__(self, timeout: float = 30) -> None:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def served_models(self, base_url: str) -> set[str]:
        """Ids from GET /v1/models: the base model's names and every loaded adapter."""
        payload = await self._call("GET", f"{base_url}/v1/models")
        return {str(entry.get("id")) for entry in payload.get("data") or [] if isinstance(entry, dict)}

    async def load_adapter(self, base_url: str, name: str, path: str, token: str | None = None) -> None:
        body = {"lora_name": name, "lora_path": path}
        await self._call("POST", f"{base_url}/v1/load_lora_adapter", body, token)

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            response = await self._http.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise EngineUnavailable(f"{method} {url}: {error!r}") from error
        if response.status_code >= 400:
            raise EngineUnavailable(f"{method} {url}: {response.status_code} {response.text[:500]}")
        try:
            payload = response.json()
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}
