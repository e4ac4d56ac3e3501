"""Only model, stream and the prompt prefix are read from a request body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sage_gateway.discovery.model import endpoints_from_slice, engine_from_object, parse_static_engines
from sage_gateway.registry import PolicyName
from sage_gateway.request_fields import routing_fields
from sage_wire.errors import WireError


def test_chat_fields() -> None:
    body = b'{"model": "qwen", "stream": true, "messages": [{"role": "system", "content": "You are terse."}]}'
    fields = routing_fields(body, "chat", 8)
    assert (fields.model, fields.stream, fields.affinity_key) == ("qwen", True, "system:Y")


def test_a_chat_prefix_is_the_first_characters_of_the_conversation_whatever_its_length() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "s" * 5},
        {"role": "user", "content": [{"type": "text", "text": "u" * 3000}]},
        {"role": "assistant", "content": "a" * 10},
    ]
    whole = "".join(f"{m['role']}:{m['content'] if isinstance(m['content'], str) else 'u' * 3000}\n" for m in messages)
    for limit in (1, 7, 8, 9, 100, 3015, 3016, 3017, 4000):
        body = orjson.dumps({"model": "m", "messages": messages})
        assert routing_fields(body, "chat", limit).affinity_key == whole[:limit], limit


def test_chat_content_parts_that_are_not_text_are_passed_over() -> None:
    """Found by the schema fuzzer: a `text` that is not a string was a 500."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": [{"text": 5}, {"text": "ok"}, 3, {"t": 1}]}]}'
    assert routing_fields(body, "chat", 16).affinity_key == "user:ok\n"


def test_completion_prefix_from_text_and_tokens() -> None:
    assert routing_fields(b'{"model": "m", "prompt": "abcdef"}', "completions", 3).affinity_key == "abc"
    assert routing_fields(b'{"model": "m", "prompt": [1, 2, 3]}', "completions", 10).affinity_key == "1,2,3"
    assert routing_fields(b'{"model": "m", "input": "x"}', "embeddings", 10).affinity_key is None
    assert routing_fields(b'{"model": "m", "prompt": ["ab", "cd"]}', "completions", 10).affinity_key == "ab"
    assert routing_fields(b'{"model": "m", "prompt": [[4, 5], [6]]}', "completions", 10).affinity_key == "4,5"


@pytest.mark.parametrize(
    "prompt",
    [b"[]", b"[[]]", b"[[[]]]", b'[""]', b"[[1, [2]]]", b"[null]", b"{}", b"3", b"[" * 500 + b"]" * 500],
)
def test_prompts_without_a_prefix_route_without_affinity(prompt: bytes) -> None:
    """Shapes the engine will judge (and refuse, with a 400): the gateway only finds no prefix."""
    body = b'{"model": "m", "prompt": ' + prompt + b"}"
    assert routing_fields(body, "completions", 10).affinity_key is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"messages": []}', "missing_model"),
        (b'{"model": 3}', "invalid_model"),
    ],
)
def test_bad_bodies_are_400_with_a_code(body: bytes, code: str) -> None:
    with pytest.raises(WireError) as caught:
        routing_fields(body, "chat", 10)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_engine_object_to_engine_info() -> None:
    engine = engine_from_object(
        {
            "metadata": {
                "name": "qwen",
                "namespace": "ml",
                "annotations": {"sage.ai/routing-policy": "least-inflight"},
            },
            "spec": {"model": "Q", "aliases": ["chat"], "adapters": [{"name": "bot", "source": "hf://x"}]},
            "status": {"phase": "Ready", "servedModels": ["qwen", "bot", "late-adapter"]},
        }
    )
    assert engine.key == "ml/qwen"
    assert engine.names == ("qwen", "chat", "bot", "late-adapter")
    assert engine.policy is PolicyName.LEAST_INFLIGHT


def test_slice_endpoints_with_port_and_readiness() -> None:
    endpoints = endpoints_from_slice(
        {
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9000}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.3"]},
            ],
        },
        8000,
    )
    assert [(e.url, e.ready) for e in endpoints] == [
        ("http://10.0.0.1:9000", True),
        ("http://10.0.0.2:9000", False),
        ("http://10.0.0.3:9000", True),
    ]


def test_static_list_parses_and_bad_fields_are_named() -> None:
    parsed = parse_static_engines("engines:\n- {name: echo, urls: ['http://127.0.0.1:1/'], aliases: [e]}\n", "f.yaml")
    engine, endpoints = parsed[0]
    assert engine.names == ("echo", "e")
    assert endpoints[0].url == "http://127.0.0.1:1"
    with pytest.raises(ValueError, match=r"f.yaml: engines.0.urls"):
        parse_static_engines("engines:\n- {name: echo}\n", "f.yaml")
    with pytest.raises(ValueError, match=r"engines.0.policy"):
        parse_static_engines("engines:\n- {name: e, urls: [u], policy: random}\n", "f.yaml")


def test_static_list_in_the_shape_local_mode_writes() -> None:
    text = '[{"name": "echo", "servedModelName": "echo", "aliases": [], "engineKind": "embedding", "endpoints": []}]'
    engine, endpoints = parse_static_engines(text, "env")[0]
    assert (engine.served_name, engine.kind, endpoints) == ("echo", "embedding", [])
