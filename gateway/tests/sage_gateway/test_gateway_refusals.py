"""A replica that refuses a request before doing any work on it (a 503 whose code says so: its
queue is full, or it is still loading) does not fail the client while another replica can serve:
the gateway sends the request there. When no other replica is left, the client gets the engine's
own 503, with its Retry-After. Two real engine processes; one kept busy by two direct streams, with
a queue bound of one."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from sage_harness.engines import EngineProcess
from sage_harness.gateway import GatewayProcess

pytestmark = pytest.mark.engine

LONG_PROMPT = " ".join(f"word{n}" for n in range(40))


@pytest.fixture
def busy(engine_factory: Callable[..., EngineProcess]) -> Iterator[EngineProcess]:
    """An engine that takes two generations at a time (one running, one queued), kept busy with
    two slow ones for the test."""
    engine = engine_factory(
        "deterministic", "echo", extra_args=("--max-queued-generations", "1", "--token-seconds", "0.5")
    )
    done = threading.Event()

    def hold(generating: threading.Event) -> None:
        messages = [{"role": "user", "content": LONG_PROMPT}]
        body = {"model": "echo", "messages": messages, "max_tokens": 40, "stream": True}
        with httpx.stream("POST", f"{engine.base_url}/v1/chat/completions", json=body, timeout=60) as response:
            for _ in response.iter_lines():
                generating.set()  # admitted: the status line came
                if done.is_set():
                    return

    for _ in range(2):
        admitted = threading.Event()
        threading.Thread(target=hold, args=(admitted,), daemon=True).start()
        assert admitted.wait(30), "the engine did not take a holding generation"
    yield engine
    done.set()


def ask(gateway: GatewayProcess, text: str = "hi") -> httpx.Response:
    """A chat request; chat routes by prompt prefix, so different texts land on different replicas."""
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], "max_tokens": 2}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=30)


def retries(gateway: GatewayProcess) -> float:
    found = re.search(
        r'^sage_gateway_retries_total\{model="echo"\} (\S+)$', httpx.get(f"{gateway.base_url}/metrics").text, re.M
    )
    return float(found.group(1)) if found else 0.0


def static_gateway(*urls: str) -> GatewayProcess:
    engines = [{"name": "echo", "urls": list(urls)}]
    return GatewayProcess(env={"SAGE_GATEWAY_DISCOVERY": "static", "SAGE_GATEWAY_STATIC_ENGINES": json.dumps(engines)})


def test_a_replica_with_a_full_queue_passes_the_request_to_another(
    busy: EngineProcess, engine_factory: Callable[..., EngineProcess]
) -> None:
    idle = engine_factory("deterministic", "echo")
    with static_gateway(busy.base_url, idle.base_url) as gateway:
        answers = [ask(gateway, f"question {n}") for n in range(12)]
        assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]
        assert Counter(a.headers["x-sage-replica"] for a in answers) == {idle.base_url: 12}
        assert retries(gateway) > 0  # the busy one was tried and refused


def test_with_no_other_replica_the_client_gets_the_engines_refusal(busy: EngineProcess) -> None:
    with static_gateway(busy.base_url) as gateway:
        refused = ask(gateway)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "engine_overloaded"
        assert refused.headers["retry-after"] == "1"
