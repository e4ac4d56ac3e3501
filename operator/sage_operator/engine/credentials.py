"""The credential that lets only the operator change what an engine serves (pure): each engine's
adapter routes (/v1/load_lora_adapter, /v1/unload_lora_adapter) take a bearer token derived from
the operator's key (HMAC-SHA256 over the engine's namespace and name), which the operator writes
into a Secret mounted by the engine's pods.

The operator creates that Secret and never reads or patches one: `create` hands back only what it
sent, while `get` or `patch` on Secrets would read every Secret of a namespace. So the token is
computed, never looked up, and the Secret's name carries a fingerprint of the key: a new key makes
a new Secret (and rolls the pods onto it) rather than changing one it cannot read."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from sage_api.engine import LLMEngine
from sage_operator.core.kinds import ENGINE_OWNER
from sage_operator.core.metadata import child_metadata

TOKEN_KEY = "token"
TOKEN_DIRECTORY = "/var/run/sage/admin"
TOKEN_FILE = f"{TOKEN_DIRECTORY}/{TOKEN_KEY}"


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(f"sage-admin-key:{key}".encode()).hexdigest()[:10]


def admin_secret_name(engine_name: str, key: str) -> str:
    return f"{engine_name}-engine-admin-{key_fingerprint(key)}"


def admin_token(key: str, namespace: str, engine_name: str) -> str:
    return hmac.new(key.encode(), f"{namespace}/{engine_name}".encode(), hashlib.sha256).hexdigest()


def render_admin_secret(engine: LLMEngine, key: str) -> dict[str, Any]:
    metadata = engine.metadata
    token = admin_token(key, metadata["namespace"], metadata["name"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": child_metadata(ENGINE_OWNER, metadata, admin_secret_name(metadata["name"], key)),
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }
