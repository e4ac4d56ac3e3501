"""Requests generated from an OpenAPI description (schemathesis, on Hypothesis), valid and invalid
alike, sent to a running server; every answer is checked for what any request must get: no 5xx,
an error envelope on every 4xx, and streams that end properly.

    report = fuzz("http://127.0.0.1:8080", openai_api(models=["echo"]), examples=500)
    assert report.requests >= 10_000 and report.failures == []
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.requests} requests, statuses {dict(sorted(self.statuses.items()))}"


def _content_type(response: Any) -> str:
    for name, values in response.headers.items():
        if name.lower() == "content-type":
            return str(values[0] if isinstance(values, list) else values)
    return ""


def _problem(response: Any) -> str | None:
    """What is wrong with an answer (a schemathesis Response), if anything."""
    if response.status_code >= 500:
        return "a server error"
    if response.status_code >= 400:
        try:
            body = json.loads(response.content)
        except json.JSONDecodeError:
            return "a 4xx that is not JSON"
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return "a 4xx without an error envelope"
        return None
    if _content_type(response).startswith("text/event-stream"):
        text = response.content.decode(errors="replace")
        if not (text.endswith("data: [DONE]\n\n") or "event: message_stop" in text or '"error"' in text):
            return "a stream that ended without [DONE], message_stop or an error event"
    return None


def _run(operation: Any, label: str, mode: GenerationMode, *, examples: int, send_to: Any, report: FuzzReport) -> None:
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        response = send_to(case)
        report.requests += 1
        report.statuses[response.status_code] += 1
        problem = _problem(response)
        if problem is not None and len(report.failures) < 20:
            report.failures.append(
                f"{label} ({mode.value}): {problem}: {response.status_code} {response.content[:300]!r} "
                f"for {repr(case.body)[:300]}"
            )

    send()


def fuzz(base_url: str, description: dict[str, Any], *, examples: int, timeout: float = 30) -> FuzzReport:
    """`examples` positive and `examples` negative cases per operation."""
    schema = schemathesis.openapi.from_dict(description)
    report = FuzzReport()
    session = requests.Session()

    def send_to(case: Any) -> Any:
        return case.call(base_url=base_url, session=session, timeout=timeout)

    for path, methods in description["paths"].items():
        for method in methods:
            operation = schema[path][method.upper()]
            has_input = "requestBody" in methods[method]  # nothing to make invalid otherwise
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
                _run(operation, f"{method.upper()} {path}", mode, examples=examples, send_to=send_to, report=report)
    return report
