"""`sage key create`: a new API key, printed once, and the APIKey manifest holding only its hash (pure
apart from the random key)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from sage_api.apikey import APIKeySpec, key_hash, new_key
from sage_api.names import API_VERSION, APIKEY

CREATE_HELP = """Draw a new random API key and write the APIKey manifest that lets the gateway accept it.
The manifest (stdout) holds only the key's SHA-256; the key itself goes to stderr, once: keep it,
it cannot be shown again. Apply the manifest in the gateway's namespace:

  sage key create team-a --models chat,minilm --rpm 600 --tpm 100000 | kubectl apply -n sage-system -f -

Revoke with `kubectl delete apikey team-a -n sage-system`; the gateway stops accepting it within a
second. Change limits with `kubectl edit apikey team-a`."""

OPTION_OF = {
    "models": "--models",
    "namespaces": "--namespaces",
    "requests_per_minute": "--rpm",
    "tokens_per_minute": "--tpm",
    "max_concurrent_requests": "--max-concurrent",
    "expires_at": "--expires",
    "description": "--description",
}
"""The option each spec field comes from, to name it in errors."""

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _expiry(text: str, now: datetime) -> str:
    """`30d`, `12h`, `90m` from now, or an RFC 3339 time."""
    match = _DURATION.match(text)
    if match:
        moment = now + timedelta(**{_UNITS[match[2]]: int(match[1])})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            msg = f"--expires {text!r}: give a duration (30d, 12h, 90m) or an RFC 3339 time"
            raise argparse.ArgumentTypeError(msg) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def add_key_commands(commands: Any) -> None:
    key = commands.add_parser("key", help="create API keys for the gateway", description="API keys of the gateway.")
    actions = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new key and its APIKey manifest", description=CREATE_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    create.add_argument("name", help="the APIKey's name (who the key is for)")
    create.add_argument("--models", type=_names, help="comma-separated model names it may use (default: all)")
    create.add_argument("--namespaces", type=_names, help="comma-separated namespaces it may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
    create.add_argument("--tpm", type=int, help="tokens per minute, prompt plus completion (default: no limit)")
    create.add_argument("--max-concurrent", type=int, help="requests open at once (default: no limit)")
    create.add_argument("--expires", help="30d, 12h, 90m from now, or an RFC 3339 time (default: never)")
    create.add_argument("--description", help="whose key this is, shown by kubectl get apikeys -o wide")


def key_manifest(args: argparse.Namespace, key: str, now: datetime) -> dict[str, Any]:
    """The APIKey for `key` with the options given; ValueError (pydantic's) for a bad option."""
    fields = {
        "key_hash": key_hash(key),
        "models": args.models,
        "namespaces": args.namespaces,
        "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm,
        "max_concurrent_requests": args.max_concurrent,
        "expires_at": _expiry(args.expires, now) if args.expires else None,
        "description": args.description,
    }
    spec = APIKeySpec.model_validate({name: value for name, value in fields.items() if value is not None})
    return {"apiVersion": API_VERSION, "kind": APIKEY.kind, "metadata": {"name": args.name}, "spec": spec.to_wire()}


def create_key(args: argparse.Namespace) -> tuple[str, str]:
    """(manifest YAML for stdout, the key)."""
    key = new_key()
    manifest = key_manifest(args, key, datetime.now(UTC))
    return yaml.safe_dump(manifest, sort_keys=False), key
