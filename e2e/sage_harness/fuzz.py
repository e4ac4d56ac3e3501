"""Requests generated from an OpenAPI description (schemathesis, on Hypothesis), valid and invalid
alike, sent to a running server; every answer is checked for what any request must get: no 5xx,
an error envelope on every 4xx, and streams that end properly.

    report = fuzz("http://127.0.0.1:8080", openai_api(models=["echo"]), examples=1700)
    assert report.requests >= 10_000 and report.failures == []

Generating a case costs 30-40 ms of one core, sending it about a millisecond, so the cases are
generated once per operation, mode, count and seed (in parallel, one process per core), kept in
the user's cache keyed by all of those and the generators' versions, and replayed: a warm run
sends the very same requests in seconds."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sage" / "fuzz"
SEED = 20261203


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content_type: str
    body: bytes


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.requests} requests, statuses {dict(sorted(self.statuses.items()))}"


def problem(status: int, content_type: str, content: bytes) -> str | None:
    """What is wrong with an answer, if anything."""
    if status >= 500:
        return "a server error"
    if status >= 400:
        try:
            body = json.loads(content)
        except json.JSONDecodeError:
            return "a 4xx that is not JSON"
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return "a 4xx without an error envelope"
        return None
    if content_type.startswith("text/event-stream"):
        text = content.decode(errors="replace")
        if not (text.endswith("data: [DONE]\n\n") or "event: message_stop" in text or '"error"' in text):
            return "a stream that ended without [DONE], message_stop or an error event"
    return None


def _request_of(kwargs: dict[str, Any], path: str) -> Request | None:
    """The bytes schemathesis would send, or None for a body JSON cannot carry (NaN)."""
    content_type = str(kwargs.get("headers", {}).get("Content-Type", ""))
    if "data" in kwargs:
        data = kwargs["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    elif "json" in kwargs:
        try:
            body = json.dumps(kwargs["json"], allow_nan=False).encode()
        except ValueError:
            return None
    else:
        body = b""
    return Request(kwargs["method"], path, content_type, body)


def _generate(description: dict[str, Any], path: str, method: str, mode: str, examples: int) -> list[Request]:
    operation = schemathesis.openapi.from_dict(description)[path][method.upper()]
    cases: list[Request] = []

    @hypothesis.seed(SEED)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=GenerationMode(mode)))
    def collect(case: Any) -> None:
        request = _request_of(case.as_transport_kwargs(base_url=""), path)
        if request is not None:
            cases.append(request)

    collect()
    return cases


def _cache_key(description: dict[str, Any], path: str, method: str, mode: str, examples: int) -> str:
    operation = description["paths"][path][method]
    versions = (schemathesis.__version__, hypothesis.__version__)
    material = json.dumps([operation, path, method, mode, examples, SEED, versions], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def _load(file: Path) -> list[Request] | None:
    try:
        lines = gzip.decompress(file.read_bytes()).splitlines()
    except (OSError, EOFError):
        return None
    rows = [json.loads(line) for line in lines]
    return [Request(r["method"], r["path"], r["content_type"], base64.b64decode(r["body"])) for r in rows]


def _store(file: Path, cases: list[Request]) -> None:
    rows = [
        json.dumps({"method": c.method, "path": c.path, "content_type": c.content_type,
                    "body": base64.b64encode(c.body).decode()})
        for c in cases
    ]  # fmt: skip
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(gzip.compress("\n".join(rows).encode()))
    partial.replace(file)


def corpus(description: dict[str, Any], *, examples: int) -> list[Request]:
    """`examples` positive and `examples` negative cases per operation (negative ones only where
    there is a body to make invalid), from the cache or generated and cached."""
    plan = []
    for path, methods in description["paths"].items():
        for method, operation in methods.items():
            modes = ("positive", "negative") if "requestBody" in operation else ("positive",)
            plan += [(path, method, mode) for mode in modes]
    files = [CACHE / f"{_cache_key(description, *step, examples)}.jsonl.gz" for step in plan]
    loaded = [_load(file) if file.exists() else None for file in files]
    missing = [n for n, cases in enumerate(loaded) if cases is None]
    if missing:
        with ProcessPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1)) as pool:
            futures = {n: pool.submit(_generate, description, *plan[n], examples) for n in missing}
            for n, future in futures.items():
                loaded[n] = future.result()
                _store(files[n], loaded[n] or [])
    return [case for cases in loaded for case in cases or []]


def fuzz(base_url: str, description: dict[str, Any], *, examples: int, timeout: float = 30) -> FuzzReport:
    """Sends the corpus of `description` to `base_url` and checks every answer."""
    report = FuzzReport()
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for case in corpus(description, examples=examples):
            headers = {"Content-Type": case.content_type} if case.content_type else {}
            response = client.request(case.method, case.path, content=case.body or None, headers=headers)
            report.requests += 1
            report.statuses[response.status_code] += 1
            found = problem(response.status_code, response.headers.get("content-type", ""), response.content)
            if found is not None and len(report.failures) < 20:
                report.failures.append(
                    f"{case.method} {case.path}: {found}: {response.status_code} {response.content[:300]!r} "
                    f"for {case.body[:300]!r}"
                )
    return report
