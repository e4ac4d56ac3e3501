"""Keys from the gateway's own settings (local mode): plain keys hashed at start, or a file of
APIKey manifests. In a cluster, keys come from a watch (see `watch`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from sage_api.apikey import HASH_PREFIX, is_key_hash
from sage_api.names import API_VERSION, APIKEY
from sage_gateway.auth.keys import KeyPolicy, KeyRing, policy_from_object, unlimited_policy


def static_policies(keys: list[str], file: Path | None) -> list[KeyPolicy]:
    """Policies from plain keys (or sha256:<hex> hashes), unlimited, and from a YAML file of APIKey
    manifests; a ValueError says what is wrong."""
    policies: list[KeyPolicy] = []
    for index, key in enumerate(keys):
        if is_key_hash(key):
            policies.append(KeyPolicy(name=f"static-{index}", digest=key.removeprefix(HASH_PREFIX)))
        else:
            policies.append(unlimited_policy(key, index))
    if file is not None:
        try:
            documents = [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
        except (OSError, yaml.YAMLError) as error:
            msg = f"cannot read the API keys file {file}: {error}"
            raise ValueError(msg) from None
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != APIKEY.kind:
                msg = f"{file}: every document must be an {APIKEY.kind} (apiVersion {API_VERSION})"
                raise ValueError(msg)
            policies.append(policy_from_object(document))
    return policies


class StaticKeys:
    def __init__(self, ring: KeyRing, policies: list[KeyPolicy]) -> None:
        for policy in policies:
            ring.upsert(policy)
        self.synced = asyncio.Event()
        self.synced.set()

    async def run(self) -> None:
        return None
