"""The local target: the control plane of `sage up` on this machine, through its management API
on the loopback address (sage_local.control_api)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from sage_api.finetune import FinetuneProgress
from sage_api.finetune_request import FinetuneRequest
from sage_cli.targets import EngineRow, FinetuneState, TargetError

CONNECT_TIMEOUT_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 30.0


def row_from_wire(item: dict[str, Any]) -> EngineRow:
    progress = item.get("progress")
    return EngineRow(
        name=str(item["name"]),
        kind=str(item["kind"]),
        model=str(item["model"]),
        backend=str(item["backend"]),
        ready=str(item["ready"]),
        phase=str(item["phase"]),
        progress=FinetuneProgress.model_validate(progress) if progress else None,
        message=str(item.get("message") or ""),
    )


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:200]}"


class LocalTarget:
    """A Target on the local control plane at `url` (http://127.0.0.1:<control port>)."""

    def __init__(self, url: str) -> None:
        self.url = url
        timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout, trust_env=False)
        self.gateway: str | None = None
        """The gateway URL the control plane reported with its last rows."""
        self.started: str | None = None
        """What `connect` did to start the control plane, if it had to."""

    @classmethod
    async def connect(cls, url: str, *, start: Callable[[], str] | None = None) -> LocalTarget:
        """Reaches the control plane at `url`. When nothing answers, `start()` (when given) starts
        one and returns what it did; else TargetError says how to start one."""
        target = cls(url)
        try:
            await target._health()
        except TargetError:
            if start is None:
                await target.aclose()
                raise
            try:
                target.started = await asyncio.to_thread(start)
                await target._health()
            except TargetError:
                await target.aclose()
                raise
        return target

    async def _health(self) -> None:
        try:
            response = await self._http.get("/healthz")
        except httpx.TransportError:
            msg = f"no local control plane answers at {self.url}; start one with `sage up` (or `sage up --detach`)"
            raise TargetError(msg) from None
        if response.status_code != 200:
            msg = f"{self.url} is not a SAGE control plane (GET /healthz answered {response.status_code})"
            raise TargetError(msg)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LocalTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def description(self) -> str:
        return f"local control plane at {self.url}"

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            msg = f"the local control plane at {self.url} stopped answering: {error or type(error).__name__}"
            raise TargetError(msg) from None
        if response.status_code >= 400:
            raise TargetError(_error_message(response))
        body: dict[str, Any] = response.json()
        return body

    async def start_engine(self, manifest: dict[str, Any]) -> str:
        return str((await self._call("POST", "/v1/engines", json=manifest))["message"])

    async def start_finetune(self, request: FinetuneRequest) -> str:
        return str((await self._call("POST", "/v1/finetunes", json=request.to_wire()))["message"])

    async def rows(self) -> list[EngineRow]:
        body = await self._call("GET", "/v1/engines")
        self.gateway = body.get("gateway")
        return [row_from_wire(item) for item in body["items"]]

    async def stop(self, name: str, *, delete: bool) -> str:
        params = {"delete": "true"} if delete else {}
        return str((await self._call("DELETE", f"/v1/engines/{name}", params=params))["message"])

    async def logs(self, name: str, *, follow: bool) -> AsyncIterator[str]:
        params = {"follow": "true"} if follow else {}
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS)
        try:
            async with self._http.stream("GET", f"/v1/engines/{name}/logs", params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise TargetError(_error_message(response))
                async for line in response.aiter_lines():
                    yield line
        except httpx.TransportError as error:
            msg = f"the local control plane at {self.url} stopped answering: {error or type(error).__name__}"
            raise TargetError(msg) from None

    async def finetune_state(self, name: str) -> FinetuneState:
        body = await self._call("GET", "/v1/engines")
        for item in body["items"]:
            if item["name"] == name and item["kind"] == "finetune":
                row = row_from_wire(item)
                return FinetuneState(row.phase, row.progress, row.message, item.get("result"))
        msg = f"no fine-tune named {name} in the local control plane at {self.url}"
        raise TargetError(msg)
