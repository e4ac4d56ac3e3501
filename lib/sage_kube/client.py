"""The asyncio API client: get, list, create, server-side apply, patch, delete, watch.

aiohttp and orjson, not httpx and json: an operator creating 1,000 engines makes about 8,000
requests, and httpx spent about 1.5 ms of CPU on each (its connection pool, h11 and anyio
wrappers) where aiohttp spends about 0.2 ms (docs/perf/operator.md). The session is made on first
use, inside the event loop that uses it, so a client may be built before a loop runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
import orjson

from sage_kube.config import KubeConfig, load_config
from sage_kube.errors import Unreachable, error_for

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}

FIELD_MANAGER = "sage"
CONNECT_SECONDS = 10
MAX_CONNECTIONS = 64
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What a broken connection, a refused one or a silent server raise in aiohttp: Unreachable."""


class KubeClient:
    """One connection pool to one API server. Use `async with KubeClient.from_env() as kube:`.

    An unreachable server, a connection cut off or a timeout raise `Unreachable`; an error Status
    raises its `ApiError`."""

    def __init__(self, config: KubeConfig, *, field_manager: str = FIELD_MANAGER, timeout: float = 30) -> None:
        self.config = config
        self.field_manager = field_manager
        # Built here, not on first use: unusable TLS settings fail where the client is made.
        self._ssl = config.ssl_context()
        self._timeout = _timeout(timeout)
        self._proxy = proxy_for(config.server)
        self._session: aiohttp.ClientSession | None = None

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
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=MAX_CONNECTIONS, limit_per_host=MAX_CONNECTIONS),
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": f"{self.field_manager}/sage-kube"},
                # Not trust_env: it looks up the proxy and ~/.netrc in a thread on every request
                # (a third of the operator's CPU); the proxy is read once, in proxy_for.
                trust_env=False,
            )
        return self._session

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
        content = None if body is None else orjson.dumps(body)
        headers = self._headers(content_type if content is not None else None)
        try:
            async with self._http().request(
                method, self.config.server + path, params=params, data=content, headers=headers, proxy=self._proxy
            ) as response:
                status, raw = response.status, await response.read()
        except _TRANSPORT_ERRORS as error:
            raise _unreachable(method, path, error) from error
        if status >= 400:
            raise error_for(status, _payload(raw))
        result: dict[str, Any] = orjson.loads(raw)
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
        async for line in self._stream(path, params, self._headers(), timeout_seconds + 30):
            if not line.strip():
                continue
            event: dict[str, Any] = orjson.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                raise error_for(int(status.get("code") or 500), status)
            yield event

    async def stream_lines(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[str]:
        """The lines of a streamed text answer (a pod's log, `follow=true`) until the server ends
        it; no read timeout, since a followed log may stay quiet for hours."""
        headers = self._headers() | {"Accept": "application/json, */*"}
        async for line in self._stream(path, params, headers, None):
            # Split at the newline byte first: it is never part of a UTF-8 character.
            yield line.decode(errors="replace").removesuffix("\r")

    async def _stream(
        self, path: str, params: dict[str, str] | None, headers: dict[str, str], read_seconds: float | None
    ) -> AsyncIterator[bytes]:
        """The lines (without their newline) of a streamed answer, which may stay silent for at
        most `read_seconds` (None: for ever); an error Status is raised as its ApiError."""
        try:
            async with self._http().get(
                self.config.server + path,
                params=params,
                headers=headers,
                timeout=_timeout(read_seconds),
                proxy=self._proxy,
            ) as response:
                if response.status >= 400:
                    raise error_for(response.status, _payload(await response.read()))
                pending = b""
                async for chunk in response.content.iter_any():
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        yield line
                if pending:
                    yield pending
        except _TRANSPORT_ERRORS as error:
            raise _unreachable("GET", path, error) from error


def proxy_for(server: str) -> str | None:
    """The proxy the environment names for the API server (HTTPS_PROXY or HTTP_PROXY by its
    scheme, unless NO_PROXY exempts its host), as every Kubernetes client honours them."""
    parts = urlsplit(server)
    proxies = getproxies_environment()
    if parts.hostname is None or proxy_bypass(parts.hostname):
        return None
    return proxies.get(parts.scheme)


def _timeout(read_seconds: float | None) -> aiohttp.ClientTimeout:
    """No overall limit (a watch lasts minutes): a connection within CONNECT_SECONDS, a free
    pooled connection within the read timeout, and no silence longer than it."""
    return aiohttp.ClientTimeout(total=None, connect=read_seconds, sock_connect=CONNECT_SECONDS, sock_read=read_seconds)


def _payload(raw: bytes) -> dict[str, Any] | str:
    """An error answer's Status, or its text when it is not JSON (a proxy's error page)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")
    return payload if isinstance(payload, dict) else raw.decode(errors="replace")


def _unreachable(method: str, path: str, error: BaseException) -> Unreachable:
    detail = str(error) or type(error).__name__
    return Unreachable(f"{method} {path}: {detail}")
