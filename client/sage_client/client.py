"""`UnifiedInferenceClient`: chat, completions, embeddings and model listing against SAGE, sync and
async, on the official `openai` SDK (its types and errors pass through). Built only by `create()`
(endpoints found local-first, see `endpoints`) or `create_with_control_plane()` (which starts
`sage up` on manifests, or reuses the local gateway that already answers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from sage_api.ports import SagePorts
from sage_client.endpoints import EndpointNotFound, Found, Purpose, candidates, default_model, probe

_FACTORY = object()
LOCAL_KEY = "sage-local"
"""What the SDK sends when no key is given: local SAGE without keys ignores it."""


@dataclass(frozen=True)
class _Target:
    base_url: str
    model: str | None


def _chosen(model: str | None, base_url: str, what: str) -> str:
    if model is None:
        msg = f"{base_url} lists no {what}; pass model="
        raise ValueError(msg)
    return model


class UnifiedInferenceClient:
    """One client for a SAGE gateway (or engines): `chat`, `complete`, `embed`, `models`, and
    `achat`, `acomplete`, `aembed`, `amodels` for asyncio. Build it with `create()`."""

    def __init__(self, chat: _Target, embedding: _Target, api_key: str | None, *, _token: object = None) -> None:
        if _token is not _FACTORY:
            msg = "build a client with UnifiedInferenceClient.create() or .create_with_control_plane()"
            raise TypeError(msg)
        key = api_key or LOCAL_KEY
        self.chat_base_url, self.chat_model = chat.base_url, chat.model
        self.embedding_base_url, self.embedding_model = embedding.base_url, embedding.model
        self.openai = OpenAI(base_url=chat.base_url, api_key=key)
        self.async_openai = AsyncOpenAI(base_url=chat.base_url, api_key=key)
        self._embeddings = OpenAI(base_url=embedding.base_url, api_key=key)
        self._async_embeddings = AsyncOpenAI(base_url=embedding.base_url, api_key=key)
        self._control_plane: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls,
        *,
        chat_base_url: str | None = None,
        embedding_base_url: str | None = None,
        chat_model: str | None = None,
        embedding_model: str | None = None,
        api_key: str | None = None,
        probe_timeout: float = 0.25,
    ) -> UnifiedInferenceClient:
        """Find SAGE: the URLs given, else SAGE_CHAT_BASE_URL / SAGE_EMBEDDING_BASE_URL, else the
        local gateway and engine ports. Raises EndpointNotFound (naming every URL tried) when
        nothing answers; never reaches for a hosted API."""
        api_key = api_key or os.environ.get("SAGE_API_KEY") or None
        targets = []
        for purpose, url, model in (
            (Purpose.CHAT, chat_base_url, chat_model),
            (Purpose.EMBEDDING, embedding_base_url, embedding_model),
        ):
            found = probe(candidates(purpose, url), purpose, timeout=probe_timeout, api_key=api_key)
            targets.append(_Target(found.base_url, model or default_model(found.models, purpose)))
        return cls(targets[0], targets[1], api_key, _token=_FACTORY)

    @classmethod
    def create_with_control_plane(
        cls, manifests: Sequence[str | Path], *, port: int | None = None, timeout: float = 900.0, **options: Any
    ) -> UnifiedInferenceClient:
        """A client bound to a local control plane: the gateway already answering on the local
        port is reused; else `sage up MANIFESTS` is started (and stopped by `close()`) and waited for."""
        port = port or SagePorts.gateway()
        local = f"http://127.0.0.1:{port}/v1"
        try:
            return cls.create(chat_base_url=local, embedding_base_url=local, **options)
        except EndpointNotFound:
            pass
        command = [sys.executable, "-m", "sage_cli", "up", "--port", str(port), *map(str, manifests)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = cls.create(chat_base_url=local, embedding_base_url=local, **options)
            except EndpointNotFound:
                if process.poll() is not None:
                    msg = f"`{' '.join(command)}` exited with code {process.returncode} before its gateway answered"
                    raise RuntimeError(msg) from None
                if time.monotonic() > deadline:
                    process.terminate()
                    msg = f"the local control plane did not answer on {local} within {timeout:.0f}s"
                    raise TimeoutError(msg) from None
                time.sleep(0.5)
                continue
            client._control_plane = process
            return client

    # -- sync ---------------------------------------------------------------------------------

    def chat(self, messages: Iterable[ChatCompletionMessageParam], *, model: str | None = None, **kwargs: Any) -> Any:
        """`chat.completions.create` (pass `stream=True` for a stream of chunks)."""
        return self.openai.chat.completions.create(model=self._chat(model), messages=list(messages), **kwargs)

    def complete(self, prompt: str, *, model: str | None = None, **kwargs: Any) -> Any:
        return self.openai.completions.create(model=self._chat(model), prompt=prompt, **kwargs)

    def embed(self, texts: str | Sequence[str], *, model: str | None = None, **kwargs: Any) -> list[list[float]]:
        """The vectors of `texts`, in order."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        answer = self._embeddings.embeddings.create(model=self._embedding(model), input=inputs, **kwargs)
        return [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]

    def models(self) -> list[str]:
        return [model.id for model in self.openai.models.list()]

    # -- async --------------------------------------------------------------------------------

    async def achat(
        self, messages: Iterable[ChatCompletionMessageParam], *, model: str | None = None, **kwargs: Any
    ) -> Any:
        return await self.async_openai.chat.completions.create(
            model=self._chat(model), messages=list(messages), **kwargs
        )

    async def acomplete(self, prompt: str, *, model: str | None = None, **kwargs: Any) -> Any:
        return await self.async_openai.completions.create(model=self._chat(model), prompt=prompt, **kwargs)

    async def aembed(self, texts: str | Sequence[str], *, model: str | None = None, **kwargs: Any) -> list[list[float]]:
        inputs = [texts] if isinstance(texts, str) else list(texts)
        answer = await self._async_embeddings.embeddings.create(model=self._embedding(model), input=inputs, **kwargs)
        return [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]

    async def amodels(self) -> list[str]:
        return [model.id async for model in self.async_openai.models.list()]

    # -- lifecycle ----------------------------------------------------------------------------

    def _chat(self, model: str | None) -> str:
        return _chosen(model or self.chat_model, self.chat_base_url, "model")

    def _embedding(self, model: str | None) -> str:
        return _chosen(model or self.embedding_model, self.embedding_base_url, "embedding model")

    def close(self) -> None:
        """Close the connections, and stop the control plane this client started (if any)."""
        for sdk in (self.openai, self._embeddings):
            sdk.close()
        if self._control_plane is not None and self._control_plane.poll() is None:
            self._control_plane.terminate()
            try:
                self._control_plane.wait(30)
            except subprocess.TimeoutExpired:
                self._control_plane.kill()
                self._control_plane.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["EndpointNotFound", "Found", "UnifiedInferenceClient"]
