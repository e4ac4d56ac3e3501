"""The asyncio API client: get, list, create, server-side apply, patch, delete, watch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from sage_kube.config import KubeConfig, load_config
from sage_kube.errors import error_for

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}

FIELD_MANAGER = "sage"


class KubeClient:
    """One connection pool to one API server. Use `async with KubeClient.from_env() as kube:`."""

    def __init__(self, config: KubeConfig, *, field_manager: str = FIELD_MANAGER, timeout: float = 30) -> None:
        self.config = config
        self.field_manager = field_manager
        self._http = httpx.AsyncClient(
            base_url=config.server,
            verify=config.ssl_context(),
            timeout=httpx.Timeout(timeout, connect=10),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"Accept": "application/json", "User-Agent": f"{field_manager}/sage-kube"},
        )

    @classmethod
    def from_env(cls, kubeconfig: str | None = None, **kwargs: Any) -> KubeClient:
        return cls(load_config(kubeconfig), **kwargs)

    @property
    def namespace(self) -> str:
        return self.config.namespace

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if token := self.config.bearer_token():
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        response = await self._http.request(
            method, path, params=params, content=content, headers=self._headers(content_type if content else None)
        )
        if response.status_code >= 400:
            try:
                payload: dict[str, Any] | str = response.json()
            except ValueError:
                payload = response.text
            raise error_for(response.status_code, payload)
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str) -> dict[str, Any]:
        return await self._request("GET", path)

    async def list(
        self, path: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict[str, Any]:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return await self._request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, body=body, params={"fieldManager": self.field_manager})

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("PUT", path, body=body, params={"fieldManager": self.field_manager})

    async def apply(self, path: str, body: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply: the object converges on `body` for the fields this manager owns."""
        params = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        return await self._request("PATCH", path, body=body, params=params, content_type="application/apply-patch+yaml")

    async def patch(self, path: str, body: Any, *, patch_type: PatchType = "merge") -> dict[str, Any]:
        return await self._request(
            "PATCH",
            path,
            body=body,
            params={"fieldManager": self.field_manager},
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def delete(self, path: str, *, propagation: str = "Background") -> dict[str, Any]:
        return await self._request("DELETE", path, body={"propagationPolicy": propagation})

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw watch events (`{"type": ..., "object": ...}`), bookmarks included, until the server
        ends the watch. An ERROR event is raised as its ApiError (410 -> Gone: relist)."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = httpx.Timeout(timeout_seconds + 30, connect=10)
        async with self._http.stream("GET", path, params=params, headers=self._headers(), timeout=timeout) as response:
            await _raise_for_stream(response)
            async for line in response.aiter_lines():
                if not line:
                    continue
                event: dict[str, Any] = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise error_for(int(status.get("code") or 500), status)
                yield event

    async def stream_lines(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[str]:
        """The lines of a streamed text answer (a pod's log, `follow=true`) until the server ends
        it; no read timeout, since a followed log may stay quiet for hours."""
        headers = self._headers() | {"Accept": "application/json, */*"}
        timeout = httpx.Timeout(None, connect=10)
        async with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
            await _raise_for_stream(response)
            async for line in response.aiter_lines():
                yield line


async def _raise_for_stream(response: httpx.Response) -> None:
    """A streamed request's error Status, raised as its ApiError."""
    if response.status_code < 400:
        return
    body = (await response.aread()).decode(errors="replace")
    try:
        payload: dict[str, Any] | str = json.loads(body)
    except ValueError:
        payload = body
    raise error_for(response.status_code, payload if isinstance(payload, dict) else body)
