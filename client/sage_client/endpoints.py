"""Where a client finds SAGE, local-first: an explicit URL, then the environment
(`SAGE_CHAT_BASE_URL`, `SAGE_EMBEDDING_BASE_URL`), then this machine's gateway and engine ports
from `sage_api.ports`, each probed with a quick `GET /v1/models`. Nothing here has a remote or
cloud default: when nothing answers, the error names every URL that was tried."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx

from sage_api.ports import SagePorts

LOCAL_ENGINE_SLOTS = 8
"""Local mode gives engines consecutive ports from its base; this many are probed."""


class Purpose(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


ENVIRONMENT = {Purpose.CHAT: "SAGE_CHAT_BASE_URL", Purpose.EMBEDDING: "SAGE_EMBEDDING_BASE_URL"}


class EndpointNotFound(ConnectionError):
    """No SAGE endpoint answered; `tried` lists every URL probed, in order."""

    def __init__(self, purpose: Purpose, tried: Sequence[str]) -> None:
        self.purpose, self.tried = purpose, list(tried)
        listing = "\n  ".join(self.tried)
        super().__init__(
            f"no SAGE {purpose} endpoint answered. Tried, in order:\n  {listing}\n"
            f"Start one with `sage up` (or `make run`), or set {ENVIRONMENT[purpose]} to its URL."
        )


def normalise(base_url: str) -> str:
    """`http://host:port`, `.../`, `.../v1` and `.../v1/` all become `http://host:port/v1`."""
    trimmed = base_url.strip().rstrip("/")
    return trimmed if trimmed.endswith("/v1") else f"{trimmed}/v1"


def local_candidates(host: str = "127.0.0.1") -> list[str]:
    """This machine's gateway, then its engine port, then local mode's engine ports."""
    ports = [SagePorts.gateway(), SagePorts.engine()]
    base = SagePorts.local_engine_base()
    ports += [base + slot for slot in range(LOCAL_ENGINE_SLOTS)]
    unique = dict.fromkeys(ports)
    return [f"http://{host}:{port}/v1" for port in unique]


def candidates(purpose: Purpose, explicit: str | None, environ: dict[str, str] | None = None) -> list[str]:
    """The URLs to try for `purpose`, in order; an explicit or environment URL is the only one."""
    env = os.environ if environ is None else environ
    chosen = explicit or env.get(ENVIRONMENT[purpose])
    return [normalise(chosen)] if chosen else local_candidates()


@dataclass(frozen=True)
class Found:
    base_url: str
    models: list[dict[str, object]]


def probe(urls: Iterable[str], purpose: Purpose, *, timeout: float, api_key: str | None) -> Found:
    """The first URL whose `/models` answers 200, with its model list; EndpointNotFound else."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    tried: list[str] = []
    with httpx.Client(timeout=timeout, headers=headers, trust_env=False) as client:
        for url in urls:
            tried.append(url)
            try:
                response = client.get(f"{url}/models")
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                data = response.json().get("data")
                return Found(url, data if isinstance(data, list) else [])
    raise EndpointNotFound(purpose, tried)


def default_model(models: Sequence[dict[str, object]], purpose: Purpose) -> str | None:
    """The first model of the purpose's kind (the gateway says which is which); else the first."""
    kind = "embedding" if purpose is Purpose.EMBEDDING else "llm"
    for model in models:
        details = model.get("sage")
        if isinstance(details, dict) and details.get("kind") == kind and details.get("role") == "served":
            return str(model["id"])
    return str(models[0]["id"]) if models else None
